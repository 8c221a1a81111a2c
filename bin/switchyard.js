#!/usr/bin/env node
// Thin launcher: the CLI is compiled from src/cli by `npm install` (prepare) or `npm run build`.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  process.stderr.write('switchyard: not built yet; run `npm install` (or `npm run build`) in the repository first\n');
  process.exit(1);
}
const { runCli } = await import(main.href);
await runCli(process.argv.slice(2));
