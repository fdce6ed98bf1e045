// Pays a URL with the official x402 JavaScript client (@x402/fetch + @x402/evm).
//
// Usage: node pay_with_x402_fetch.mjs URL NETWORK TOKEN
// The payer's private key comes on stdin (never on the command line, where
// `ps` would show it). Prints one JSON line: the status, the body and the
// decoded PAYMENT-RESPONSE header.
import { readFileSync } from "node:fs";

import { ExactEvmScheme } from "@x402/evm";
import { decodePaymentResponseHeader, wrapFetchWithPaymentFromConfig } from "@x402/fetch";
import { privateKeyToAccount } from "viem/accounts";

const [url, network, token] = process.argv.slice(2);
const key = readFileSync(0, "utf8").trim();
const account = privateKeyToAccount(key);

const fetchWithPayment = wrapFetchWithPaymentFromConfig(fetch, {
  schemes: [{ network, client: new ExactEvmScheme(account) }],
  // Our token is not one of the SDK's default assets: allow it explicitly.
  spendControls: { allowedAssets: [{ network, asset: token }] },
});

const response = await fetchWithPayment(url, { method: "GET" });
const header = response.headers.get("PAYMENT-RESPONSE");
console.log(
  JSON.stringify({
    status: response.status,
    body: await response.text(),
    paymentResponse: header ? decodePaymentResponseHeader(header) : null,
  }),
);
