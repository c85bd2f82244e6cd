import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/**
 * Certificates made with openssl in `dir` (PEM, `<name>.pem` + `<name>.key`):
 * a CA `ca`, server certificates `server` and `server2` for 127.0.0.1 signed
 * by it, a client certificate `apiserver` signed by it, and `stranger`, a
 * client certificate of another CA (`other-ca`). Valid for two days.
 */
export function makeCerts(dir: string): void {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  const ca = (name: string) => openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.pem`);
  const cert = (name: string, caName: string, ext: string) => {
    fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${caName}.pem`, '-CAkey', `${caName}.key`, '-CAcreateserial', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.pem`);
  };
  ca('ca');
  ca('other-ca');
  cert('server', 'ca', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  cert('server2', 'ca', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  cert('apiserver', 'ca', 'extendedKeyUsage=clientAuth\n');
  cert('stranger', 'other-ca', 'extendedKeyUsage=clientAuth\n');
}
