// The workers' page: sign in with the wallet (EIP-1193 personal_sign of a SIWE
// message), and watch a delivered job until the agent has paid.
// Served by `farthing jobs serve` itself; the page's CSP allows no other script.
"use strict";
(function () {
  var status = document.getElementById("jobs-status");
  function say(text, state) {
    if (!status) { return; }
    status.textContent = text;
    status.dataset.state = state || "";
  }
  function hex(bytes) {
    var out = "0x";
    for (var i = 0; i < bytes.length; i += 1) { out += ("0" + bytes[i].toString(16)).slice(-2); }
    return out;
  }
  // EIP-4361, line for line as the server rebuilds it (farthing.paywall.edge.sign_in.siwe_message).
  function siwe(p, chainNumber) {
    var head = p.domain + " wants you to sign in with your Ethereum account:\n" + p.address;
    head = p.statement ? head + "\n\n" + p.statement : head + "\n";
    var lines = [
      "URI: " + p.uri, "Version: " + p.version, "Chain ID: " + chainNumber,
      "Nonce: " + p.nonce, "Issued At: " + p.issuedAt
    ];
    if (p.expirationTime) { lines.push("Expiration Time: " + p.expirationTime); }
    if (p.resources && p.resources.length) {
      lines.push(["Resources:"].concat(p.resources.map(function (r) { return "- " + r; })).join("\n"));
    }
    return head + "\n\n" + lines.join("\n");
  }
  function declined(error) { return error && (error.code === 4001 || error.code === "ACTION_REJECTED"); }

  function signIn() {
    var eth = window.ethereum;
    if (!eth || typeof eth.request !== "function") {
      say("No wallet was found in this browser. Install a wallet extension to sign in.", "error");
      return;
    }
    var button = document.getElementById("jobs-signin");
    if (button) { button.disabled = true; }
    say("Waiting for your wallet…", "working");
    var address;
    eth.request({ method: "eth_requestAccounts" }).then(function (accounts) {
      if (!accounts || !accounts.length) { throw { sentence: "Your wallet shared no account." }; }
      address = accounts[0];
      return fetch("/api/sign-in", { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" });
    }, function (error) {
      throw { sentence: declined(error) ? "You declined to connect your wallet." : "Your wallet did not answer." };
    }).then(function (response) {
      if (!response.ok) { throw { sentence: "The server gave no sign-in challenge; try again." }; }
      return response.json();
    }).then(function (challenge) {
      var info = challenge.info;
      var chain = challenge.supportedChains[0].chainId;
      var payload = {
        domain: info.domain, address: address, statement: info.statement, uri: info.uri,
        version: info.version, chainId: chain, type: "eip191", nonce: info.nonce,
        issuedAt: info.issuedAt, expirationTime: info.expirationTime, resources: info.resources
      };
      var message = siwe(payload, Number(chain.split(":")[1]));
      return eth.request({ method: "personal_sign", params: [hex(new TextEncoder().encode(message)), address] })
        .then(function (signature) {
          payload.signature = signature;
          return fetch("/api/sign-in", {
            method: "POST", credentials: "same-origin", cache: "no-store",
            headers: { "Content-Type": "application/json", Accept: "application/json" },
            body: JSON.stringify(payload)
          });
        }, function (error) {
          throw { sentence: declined(error) ? "You declined to sign in, so nothing changed." : "Your wallet could not sign." };
        });
    }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) { throw { sentence: "Sign-in refused: " + (body.message || body.error) + "." }; }
        say("Signed in as " + body.address + ".", "done");
        window.location.reload();
      });
    }).catch(function (error) {
      if (button) { button.disabled = false; }
      say((error && error.sentence) || "Sign-in failed; try again.", "error");
    });
  }

  var button = document.getElementById("jobs-signin");
  if (button) { button.addEventListener("click", signIn); }

  // A delivered job: look every few seconds, and show the payment once the agent decided.
  var waiting = document.getElementById("awaiting-review");
  if (waiting && waiting.dataset.jobId) {
    var url = "/api/jobs/" + encodeURIComponent(waiting.dataset.jobId);
    var timer = setInterval(function () {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (job) {
          if (job && job.payment && job.payment.settled) { clearInterval(timer); window.location.reload(); }
        }, function () { /* the server may be restarting: the next tick asks again */ });
    }, 3000);
  }
}());
