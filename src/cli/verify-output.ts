export async function verifyOutputCommand(_args: { config: string; output: string; from?: string; to?: string; hmacKey?: Buffer; json: boolean }): Promise<number> {
  process.stderr.write('ktrail: verify --output is not implemented yet\n');
  return 2;
}
