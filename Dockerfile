# syntax=docker/dockerfile:1
#
# ktrail image: Node 24 runs the TypeScript sources directly (type stripping),
# so there is no JS build step. The build stage exists only to compile the
# native addon (better-sqlite3) and to type-check; the runtime stage gets the
# production node_modules and the sources, nothing else.
#
# Both stages use the same Debian release and Node major: the addon compiled in
# the build stage is loaded by the runtime stage's Node (same ABI, same glibc).
# For reproducible builds pin both FROM lines to a digest (docs/deploy.md).

FROM node:24-bookworm-slim AS build
WORKDIR /app
# node-gyp needs python3, make and a C++ compiler when no prebuilt
# better-sqlite3 binary matches this Node; --no-install-recommends keeps the
# stage small (it is thrown away anyway).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
# Dependencies first: this layer is reused until package*.json change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY bin ./bin
COPY src ./src
# The type check runs on exactly the sources the image ships.
RUN npm run typecheck
# Only production dependencies reach the runtime stage; the compiled addon
# stays (better-sqlite3 is a production dependency).
RUN npm prune --omit=dev --no-audit --no-fund \
 && node -e "new (require('better-sqlite3'))(':memory:').prepare('select 1').get()"

FROM node:24-bookworm-slim AS runtime
# Set by the release build: docker build --build-arg VERSION=... --build-arg REVISION=$(git rev-parse HEAD)
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="ktrail" \
      org.opencontainers.image.description="Kubernetes audit-log and events shipping agent: nothing lost, nothing duplicated." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="docker.io/library/node:24-bookworm-slim"
ENV NODE_ENV=production
# The V8 heap flags ktrail ships with (the manifests and `npm start` use the
# same; docs/deploy.md#sizing and docs/performance.md say why).
ENV NODE_OPTIONS="--max-old-space-size=224 --max-semi-space-size=8"
WORKDIR /app
# Files stay owned by root and read-only to the runtime user: the agent can
# not modify its own code even where the root filesystem is writable.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/bin ./bin
COPY --from=build /app/src ./src
# The state directory must exist for a `docker run` without a volume; in
# Kubernetes a hostPath, PVC or emptyDir is mounted over it.
RUN mkdir -p /var/lib/ktrail /etc/ktrail && chown 1000:1000 /var/lib/ktrail
# V8's compile cache, filled here for every module: a fresh container starts
# without parsing or type-stripping the sources (about half the start-up time).
# Node keeps one cache per uid: filled for root (the audit agent) and for 1000
# (the events collector), then made read-only like the code; Node skips
# writing to it.
ENV NODE_COMPILE_CACHE=/app/.compile-cache
RUN mkdir /app/.compile-cache && chown 1000:1000 /app/.compile-cache \
 && node bin/warm-compile-cache.js \
 && su -s /bin/sh node -c 'node bin/warm-compile-cache.js' \
 && chown -R root:root /app/.compile-cache && chmod -R a-w /app/.compile-cache
# The base image's `node` user, given numerically so the kubelet can verify
# runAsNonRoot. The audit-agent DaemonSet overrides this with runAsUser 0
# (without any capability) because kube-apiserver writes its audit files
# 0600 root; see docs/security.md.
USER 1000:1000
EXPOSE 9464
# Node runs as PID 1 without an init: ktrail installs SIGTERM/SIGINT handlers
# (a PID 1 without handlers would ignore SIGTERM) and starts no child
# processes, so there are no zombies to reap. See docs/deploy.md.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "bin/ktrail.js"]
CMD ["run", "-c", "/etc/ktrail/ktrail.yaml"]
