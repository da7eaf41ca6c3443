// tests/clients/hf_download.mjs — the @huggingface/hub client (the library behind the
// Hugging Face JavaScript tools), pointed at the gateway as its hub, downloads one file
// the way the library does (a probe, then the bytes) and writes it to a local path.
// Used by tests/test_clients.c.
//   node hf_download.mjs HUB_URL TOKEN REPO PATH OUT
// Prints {"size":N} and exits 0, or prints the library's error and exits 1.
import { downloadFile } from "@huggingface/hub";
import { writeFile } from "node:fs/promises";

const [hubUrl, accessToken, repo, path, out] = process.argv.slice(2);
if (!out) {
  console.error("usage: node hf_download.mjs HUB_URL TOKEN REPO PATH OUT");
  process.exit(2);
}
try {
  const blob = await downloadFile({ repo, path, hubUrl, accessToken });
  if (blob === null) {
    console.error("not found");
    process.exit(1);
  }
  const bytes = Buffer.from(await blob.arrayBuffer());
  await writeFile(out, bytes);
  console.log(JSON.stringify({ size: bytes.length }));
} catch (err) {
  console.error(`${err.name}: ${err.message}`);
  process.exit(1);
}
