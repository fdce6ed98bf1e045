// Pays a URL COUNT times through one batch-settlement channel with the official
// x402 JavaScript client (@x402/fetch + @x402/evm's BatchSettlementEvmScheme).
//
// Usage: node pay_with_x402_fetch_channel.mjs URL NETWORK TOKEN RPC_URL COUNT
// The payer's private key comes on stdin (never on the command line, where
// `ps` would show it). Prints one JSON line: each response's status, body and
// decoded PAYMENT-RESPONSE header.
import { readFileSync } from "node:fs";

import { BatchSettlementEvmScheme } from "@x402/evm/batch-settlement/client";
import { decodePaymentResponseHeader, wrapFetchWithPaymentFromConfig } from "@x402/fetch";
import { privateKeyToAccount } from "viem/accounts";

const [url, network, token, rpcUrl, count] = process.argv.slice(2);
const key = readFileSync(0, "utf8").trim();
const account = privateKeyToAccount(key);

const scheme = new BatchSettlementEvmScheme(account, {
  depositPolicy: { depositMultiplier: 20 },
  rpcUrl,
});
const fetchWithPayment = wrapFetchWithPaymentFromConfig(fetch, {
  schemes: [{ network, client: scheme }],
  // Our token is not one of the SDK's default assets: allow it explicitly.
  spendControls: { allowedAssets: [{ network, asset: token }] },
});

const results = [];
for (let i = 0; i < Number(count); i += 1) {
  const response = await fetchWithPayment(url, { method: "GET" });
  const header = response.headers.get("PAYMENT-RESPONSE");
  results.push({
    status: response.status,
    body: await response.text(),
    paymentResponse: header ? decodePaymentResponseHeader(header) : null,
  });
}
console.log(JSON.stringify(results));
