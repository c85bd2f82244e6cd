/**
 * The pipeline the manifest chain and metrics tests seal over: the fake
 * input's 100 records, every tenth dropped by a filter (so entries carry
 * filtered gaps), shipped to a file output named `out` at `outPath`. YAML
 * from `inputs:` through the `out` line; a caller may add further outputs.
 */
export function dropTensPipelineYaml(outPath: string): string {
  return `inputs:
  src: { type: fake, total: 100, batch: 10 }
processors:
  drop-tens:
    type: filter
    rules: [{ name: tens, action: drop, when: { field: seq, in: [0, 10, 20, 30, 40, 50, 60, 70, 80, 90] } }]
outputs:
  out: { type: file, path: ${outPath} }`;
}
