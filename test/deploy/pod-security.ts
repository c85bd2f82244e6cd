import type { Container, PodSpec } from './manifests.ts';

/**
 * The Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards,
 * version "latest"), as the admission controller applies them to a pod spec:
 * every control of the `baseline` level, then those `restricted` adds.
 * Returns one line per violation; an empty list means the level admits the pod.
 * Written from the published controls, checked against the manifests by
 * test/deploy/manifests.test.ts (including that each control can fail).
 */

export type Level = 'baseline' | 'restricted';

interface SecurityContext {
  privileged?: boolean;
  allowPrivilegeEscalation?: boolean;
  runAsNonRoot?: boolean;
  runAsUser?: number;
  procMount?: string;
  capabilities?: { add?: string[]; drop?: string[] };
  seccompProfile?: { type: string };
  appArmorProfile?: { type: string };
  seLinuxOptions?: { type?: string; user?: string; role?: string };
  windowsOptions?: { hostProcess?: boolean };
  sysctls?: Array<{ name: string; value: string }>;
}

const BASELINE_CAPABILITIES = new Set([
  'AUDIT_WRITE',
  'CHOWN',
  'DAC_OVERRIDE',
  'FOWNER',
  'FSETID',
  'KILL',
  'MKNOD',
  'NET_BIND_SERVICE',
  'SETFCAP',
  'SETGID',
  'SETPCAP',
  'SETUID',
  'SYS_CHROOT',
]);
const SAFE_SYSCTLS = new Set([
  'kernel.shm_rmid_forced',
  'net.ipv4.ip_local_port_range',
  'net.ipv4.ip_unprivileged_port_start',
  'net.ipv4.tcp_syncookies',
  'net.ipv4.ping_group_range',
  'net.ipv4.ip_local_reserved_ports',
  'net.ipv4.tcp_keepalive_time',
  'net.ipv4.tcp_fin_timeout',
  'net.ipv4.tcp_keepalive_intvl',
  'net.ipv4.tcp_keepalive_probes',
]);
const SELINUX_TYPES = new Set(['', 'container_t', 'container_init_t', 'container_kvm_t', 'container_engine_t']);
const RESTRICTED_VOLUME_TYPES = new Set(['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret']);

export function podSecurityViolations(pod: PodSpec, level: Level, annotations: Record<string, string> = {}): string[] {
  const out: string[] = [];
  const podSc = (pod.securityContext ?? {}) as SecurityContext & { sysctls?: Array<{ name: string }> };
  const containers: Array<{ where: string; c: Container }> = [
    ...(pod.initContainers ?? []).map((c) => ({ where: `initContainers[${c.name}]`, c })),
    ...pod.containers.map((c) => ({ where: `containers[${c.name}]`, c })),
  ];
  const sc = (c: Container) => (c.securityContext ?? {}) as SecurityContext;

  // --- baseline
  if (podSc.windowsOptions?.hostProcess) out.push('securityContext.windowsOptions.hostProcess');
  if (pod.hostNetwork) out.push('hostNetwork');
  if (pod.hostPID) out.push('hostPID');
  if (pod.hostIPC) out.push('hostIPC');
  for (const v of pod.volumes ?? []) if (v.hostPath) out.push(`volumes[${v.name}].hostPath`);
  for (const s of podSc.sysctls ?? []) if (!SAFE_SYSCTLS.has(s.name)) out.push(`securityContext.sysctls[${s.name}]`);
  const seLinux = (where: string, o: SecurityContext['seLinuxOptions']) => {
    if (!o) return;
    if (!SELINUX_TYPES.has(o.type ?? '')) out.push(`${where}.seLinuxOptions.type`);
    if (o.user) out.push(`${where}.seLinuxOptions.user`);
    if (o.role) out.push(`${where}.seLinuxOptions.role`);
  };
  seLinux('securityContext', podSc.seLinuxOptions);
  const appArmorOk = (t: string | undefined) => t === undefined || t === 'RuntimeDefault' || t === 'Localhost';
  if (!appArmorOk(podSc.appArmorProfile?.type)) out.push('securityContext.appArmorProfile');
  for (const [k, v] of Object.entries(annotations)) {
    if (k.startsWith('container.apparmor.security.beta.kubernetes.io/') && v !== 'runtime/default' && !v.startsWith('localhost/')) out.push(`annotations[${k}]`);
  }
  if (podSc.seccompProfile?.type === 'Unconfined') out.push('securityContext.seccompProfile Unconfined');
  for (const { where, c } of containers) {
    const s = sc(c);
    if (s.windowsOptions?.hostProcess) out.push(`${where}.securityContext.windowsOptions.hostProcess`);
    if (s.privileged) out.push(`${where}.securityContext.privileged`);
    for (const cap of s.capabilities?.add ?? []) if (!BASELINE_CAPABILITIES.has(cap)) out.push(`${where}.capabilities.add ${cap}`);
    for (const p of c.ports ?? []) if ((p as { hostPort?: number }).hostPort) out.push(`${where}.ports hostPort`);
    if (!appArmorOk(s.appArmorProfile?.type)) out.push(`${where}.securityContext.appArmorProfile`);
    seLinux(`${where}.securityContext`, s.seLinuxOptions);
    if (s.procMount !== undefined && s.procMount !== 'Default') out.push(`${where}.securityContext.procMount`);
    if (s.seccompProfile?.type === 'Unconfined') out.push(`${where}.securityContext.seccompProfile Unconfined`);
  }
  if (level === 'baseline') return out;

  // --- restricted
  for (const v of pod.volumes ?? []) {
    const types = Object.keys(v).filter((k) => k !== 'name');
    for (const t of types) if (!RESTRICTED_VOLUME_TYPES.has(t)) out.push(`volumes[${v.name}] type ${t}`);
  }
  if (podSc.runAsUser === 0) out.push('securityContext.runAsUser 0');
  const seccompOk = (t: string | undefined) => t === 'RuntimeDefault' || t === 'Localhost';
  for (const { where, c } of containers) {
    const s = sc(c);
    if (s.allowPrivilegeEscalation !== false) out.push(`${where}.securityContext.allowPrivilegeEscalation must be false`);
    // runAsNonRoot: true on the pod or the container, and false on neither container.
    if (s.runAsNonRoot === false || (s.runAsNonRoot !== true && podSc.runAsNonRoot !== true)) out.push(`${where} runAsNonRoot must be true`);
    if (s.runAsUser === 0) out.push(`${where}.securityContext.runAsUser 0`);
    if (!seccompOk(s.seccompProfile?.type ?? podSc.seccompProfile?.type)) out.push(`${where} seccompProfile must be RuntimeDefault or Localhost`);
    if (!(s.capabilities?.drop ?? []).includes('ALL')) out.push(`${where}.capabilities.drop must include ALL`);
    for (const cap of s.capabilities?.add ?? []) if (cap !== 'NET_BIND_SERVICE') out.push(`${where}.capabilities.add ${cap} (restricted)`);
  }
  return out;
}
