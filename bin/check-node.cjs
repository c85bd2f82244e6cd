// The Node.js version gate of bin/ktrail.js: one line that says what to do on a
// Node older than ktrail needs. (`npm ci` is stopped earlier, before it fetches
// anything, by engine-strict in .npmrc and package.json's engines.)
// Written in the oldest JavaScript on purpose (var, no arrows, no template
// strings): it must parse on any Node it is meant to turn away.
'use strict';
var MIN_MAJOR = 22;
var MIN_MINOR = 18;

// Returns the one-line hint for a version string like "v20.11.1" or "22.17.0",
// or null when that version is new enough.
function nodeVersionProblem(version) {
  var parts = String(version).replace(/^v/, '').split('.');
  var major = parseInt(parts[0], 10) || 0;
  var minor = parseInt(parts[1], 10) || 0;
  if (major > MIN_MAJOR || (major === MIN_MAJOR && minor >= MIN_MINOR)) return null;
  return 'ktrail needs Node.js >= ' + MIN_MAJOR + '.' + MIN_MINOR + ' (found v' + parts.join('.') +
    '). On an older system Node run: . scripts/toolchain.sh';
}

module.exports = { nodeVersionProblem: nodeVersionProblem, MIN_MAJOR: MIN_MAJOR, MIN_MINOR: MIN_MINOR };
