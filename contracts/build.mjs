#!/usr/bin/env node
// Compile contracts/*.sol with the pinned solc-js and write one artifact per
// contract to contracts/artifacts/<Name>.json.
//
//   node contracts/build.mjs           write the artifacts
//   node contracts/build.mjs --check   compare with the committed artifacts;
//                                      exit 1 on any drift, change nothing
//
// The output is deterministic: sources are read in sorted order, keys are
// written in a fixed order and every file ends with a newline, so a rebuild
// of unchanged sources is byte-identical. Only contracts named after their
// file (Stablecoin in Stablecoin.sol) get an artifact; interfaces do not.

import { readdirSync, readFileSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const EVM_VERSION = "prague";
const OPTIMIZER_RUNS = 200;

const here = dirname(fileURLToPath(import.meta.url));
const artifactsDir = join(here, "artifacts");
const require = createRequire(import.meta.url);

function loadSolc() {
  try {
    return require("solc");
  } catch (err) {
    console.error("error: the solc npm package is missing; run `npm ci` at the repository root");
    process.exit(2);
  }
}

function compile(solc) {
  const files = readdirSync(here).filter((f) => f.endsWith(".sol")).sort();
  const sources = {};
  for (const file of files) {
    sources[file] = { content: readFileSync(join(here, file), "utf8") };
  }
  const input = {
    language: "Solidity",
    sources,
    settings: {
      evmVersion: EVM_VERSION,
      optimizer: { enabled: true, runs: OPTIMIZER_RUNS },
      outputSelection: {
        "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
      },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const e of output.errors || []) {
    console.error(e.formattedMessage.trimEnd());
  }
  if (errors.length > 0) {
    process.exit(1);
  }

  const artifacts = {};
  for (const file of files) {
    const contractName = file.slice(0, -".sol".length);
    const compiled = output.contracts[file]?.[contractName];
    if (!compiled) {
      console.error(`error: ${file} defines no contract named ${contractName}`);
      process.exit(1);
    }
    const artifact = {
      contractName,
      sourceName: file,
      abi: compiled.abi,
      bytecode: "0x" + compiled.evm.bytecode.object,
      deployedBytecode: "0x" + compiled.evm.deployedBytecode.object,
      compiler: {
        name: "solc",
        version: solc.version(),
        evmVersion: EVM_VERSION,
        optimizer: { enabled: true, runs: OPTIMIZER_RUNS },
      },
    };
    artifacts[`${contractName}.json`] = JSON.stringify(artifact, null, 2) + "\n";
  }
  return artifacts;
}

function main() {
  const check = process.argv.includes("--check");
  const artifacts = compile(loadSolc());
  const existing = existsSync(artifactsDir)
    ? readdirSync(artifactsDir).filter((f) => f.endsWith(".json")).sort()
    : [];

  if (check) {
    const drift = [];
    for (const [file, text] of Object.entries(artifacts)) {
      const path = join(artifactsDir, file);
      if (!existsSync(path)) {
        drift.push(`${file}: missing`);
      } else if (readFileSync(path, "utf8") !== text) {
        drift.push(`${file}: differs from a fresh compile`);
      }
    }
    for (const file of existing) {
      if (!(file in artifacts)) {
        drift.push(`${file}: no source for it`);
      }
    }
    if (drift.length > 0) {
      console.error("artifacts are out of date (run `node contracts/build.mjs`):");
      for (const line of drift) console.error(`  ${line}`);
      process.exit(1);
    }
    console.log(`artifacts match the sources (${Object.keys(artifacts).length} contracts)`);
    return;
  }

  mkdirSync(artifactsDir, { recursive: true });
  for (const [file, text] of Object.entries(artifacts)) {
    writeFileSync(join(artifactsDir, file), text);
  }
  console.log(`wrote ${Object.keys(artifacts).length} artifacts to contracts/artifacts/`);
}

main();
