// Farthing's paywall page: pay for the rest of an article with a browser wallet (EIP-1193),
// or sign in with the wallet that already paid (x402 sign-in-with-x). No framework, no eval,
// no inline script: the terms are read from the page's JSON data block.
(function () {
  "use strict";
  var box = document.getElementById("farthing-paywall");
  var data = document.getElementById("farthing-terms");
  if (!box || !data) { return; }
  var terms = JSON.parse(data.textContent);
  var accepts = terms.accepts;
  var status = document.getElementById("farthing-status");
  var buttons = box.querySelectorAll("button");
  var loadedAtMs = Date.now();
  var PENDING_RETRY_MS = 3000;
  var PENDING_TRIES_MAX = 40;

  var SENTENCES = {
    no_wallet: "No wallet was found in this browser: install a wallet extension, then reload this page.",
    connect_refused: "You did not connect a wallet, so nothing was paid.",
    sign_refused: "You declined to sign the payment, so nothing was paid.",
    signin_refused: "You declined to sign in, so nothing was shown.",
    wrong_network: "Your wallet is on the wrong network: switch it to " + terms.networkName + " and try again.",
    insufficient_balance: "Your wallet does not hold enough " + terms.price.symbol + " to pay for this article.",
    pending: "Your payment is being settled on the chain; this page checks again by itself, so do not pay again.",
    pending_gave_up: "Your payment is still being settled: reload this page in a minute, you will not pay twice.",
    not_owned: "This wallet has not bought this article yet: pay below to read it.",
    nonce_already_used: "This payment was already used: reload the page to read the article or pay again.",
    valid_before: "The payment took too long to sign: please try again.",
    network: "The connection to the site failed: check your network and try again.",
    failed: "The payment was refused by the site: please try again."
  };
  var REASONS = {
    insufficient_balance: "insufficient_balance",
    insufficient_funds: "insufficient_balance",
    nonce_already_used: "nonce_already_used",
    valid_before_expired: "valid_before",
    valid_before_too_far: "valid_before",
    network_mismatch: "wrong_network",
    settlement_pending: "pending",
    settlement_unknown: "pending"
  };

  function say(key, kind) {
    status.textContent = SENTENCES[key] || key;
    status.setAttribute("data-state", kind || "error");
  }
  function busy(on) {
    for (var i = 0; i < buttons.length; i += 1) { buttons[i].disabled = on; }
  }
  function refused(error) { return error && (error.code === 4001 || error.code === "ACTION_REJECTED"); }
  function b64json(value) { return btoa(unescape(encodeURIComponent(JSON.stringify(value)))); }
  function unb64json(text) { try { return JSON.parse(atob(text)); } catch (e) { return null; } }
  function hex(bytes) {
    var out = "0x";
    for (var i = 0; i < bytes.length; i += 1) { out += ("0" + bytes[i].toString(16)).slice(-2); }
    return out;
  }
  function wallet() {
    if (!window.ethereum || typeof window.ethereum.request !== "function") { throw { sentence: "no_wallet" }; }
    return window.ethereum;
  }
  function connect(eth) {
    return eth.request({ method: "eth_requestAccounts" }).then(function (accounts) {
      if (!accounts || !accounts.length) { throw { sentence: "connect_refused" }; }
      return accounts[0];
    }, function (error) { throw { sentence: refused(error) ? "connect_refused" : "no_wallet" }; });
  }
  function onChain(eth) {
    var wanted = "0x" + Number(terms.chainId).toString(16);
    return eth.request({ method: "eth_chainId" }).then(function (current) {
      if (parseInt(current, 16) === Number(terms.chainId)) { return null; }
      return eth.request({ method: "wallet_switchEthereumChain", params: [{ chainId: wanted }] })
        .then(function () { return eth.request({ method: "eth_chainId" }); })
        .then(function (now) {
          if (parseInt(now, 16) !== Number(terms.chainId)) { throw { sentence: "wrong_network" }; }
          return null;
        }, function () { throw { sentence: "wrong_network" }; });
    });
  }
  function show(response) {
    // The paid answer is the whole document: put it in place of this page.
    return response.text().then(function (text) {
      var type = response.headers.get("content-type") || "";
      if (type.indexOf("html") < 0) {
        var pre = document.createElement("pre");
        pre.textContent = text;
        box.replaceWith(pre);
        return;
      }
      var doc = new DOMParser().parseFromString(text, "text/html");
      document.replaceChild(document.adoptNode(doc.documentElement), document.documentElement);
    });
  }
  function reasonOf(response) {
    var header = response.headers.get("payment-required") || response.headers.get("payment-response");
    var decoded = header ? unb64json(header) : null;
    if (decoded && (decoded.error || decoded.errorReason)) { return decoded.error || decoded.errorReason; }
    return "failed";
  }
  function retry(headers, tries) {
    headers.Accept = "text/html";
    return fetch(window.location.href, { headers: headers, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.ok) { return show(response).then(function () { return true; }); }
        if (response.status === 503 && tries < PENDING_TRIES_MAX) {
          say("pending", "pending");
          // The same payment again, never a new one: the server settles it at most once.
          return new Promise(function (resolve) { setTimeout(resolve, PENDING_RETRY_MS); })
            .then(function () { return retry(headers, tries + 1); });
        }
        if (response.status === 503) { throw { sentence: "pending_gave_up" }; }
        var reason = reasonOf(response);
        throw { sentence: REASONS[reason] || (SENTENCES[reason] ? reason : "failed"), reason: reason };
      }, function () { throw { sentence: "network" }; });
  }
  function randomNonce() {
    var bytes = new Uint8Array(32);
    window.crypto.getRandomValues(bytes);
    return hex(bytes);
  }
  function pay() {
    var eth;
    try { eth = wallet(); } catch (e) { say(e.sentence); return; }
    busy(true);
    say("", "working");
    var from;
    connect(eth).then(function (account) {
      from = account;
      return onChain(eth);
    }).then(function () {
      // Server time, so a wrong clock on the reader's machine cannot spoil the window.
      var nowS = Number(terms.serverTimeS) + Math.floor((Date.now() - loadedAtMs) / 1000);
      var authorization = {
        from: from,
        to: accepts.payTo,
        value: String(accepts.amount),
        validAfter: String(nowS - 600),
        validBefore: String(nowS + Math.max(30, Number(accepts.maxTimeoutSeconds) - 30)),
        nonce: randomNonce()
      };
      var typed = {
        types: {
          EIP712Domain: [
            { name: "name", type: "string" }, { name: "version", type: "string" },
            { name: "chainId", type: "uint256" }, { name: "verifyingContract", type: "address" }
          ],
          TransferWithAuthorization: [
            { name: "from", type: "address" }, { name: "to", type: "address" },
            { name: "value", type: "uint256" }, { name: "validAfter", type: "uint256" },
            { name: "validBefore", type: "uint256" }, { name: "nonce", type: "bytes32" }
          ]
        },
        primaryType: "TransferWithAuthorization",
        domain: {
          name: accepts.extra.name, version: accepts.extra.version,
          chainId: Number(terms.chainId), verifyingContract: accepts.asset
        },
        message: authorization
      };
      return eth.request({ method: "eth_signTypedData_v4", params: [from, JSON.stringify(typed)] })
        .then(function (signature) {
          return { x402Version: 2, resource: terms.resource, accepted: accepts,
                   payload: { authorization: authorization, signature: signature } };
        }, function (error) { throw { sentence: refused(error) ? "sign_refused" : "failed" }; });
    }).then(function (payment) {
      say("pending", "pending");
      return retry({ "PAYMENT-SIGNATURE": b64json(payment) }, 0);
    }).then(function () { busy(false); }, function (error) {
      busy(false);
      say((error && error.sentence) || "failed");
    });
  }
  function siwe(info, address) {
    var lines = [
      "URI: " + info.uri, "Version: " + info.version, "Chain ID: " + Number(terms.chainId),
      "Nonce: " + info.nonce, "Issued At: " + info.issuedAt
    ];
    if (info.expirationTime) { lines.push("Expiration Time: " + info.expirationTime); }
    if (info.resources && info.resources.length) {
      lines.push(["Resources:"].concat(info.resources.map(function (r) { return "- " + r; })).join("\n"));
    }
    var head = info.domain + " wants you to sign in with your Ethereum account:\n" + address;
    head = info.statement ? head + "\n\n" + info.statement : head + "\n";
    return head + "\n\n" + lines.join("\n");
  }
  function signIn() {
    var eth;
    try { eth = wallet(); } catch (e) { say(e.sentence); return; }
    busy(true);
    say("", "working");
    var address;
    connect(eth).then(function (account) {
      address = account;
      // A fresh challenge: the one in the page may be older than the server accepts.
      return fetch(window.location.href, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" });
    }).then(function (response) {
      if (response.ok) { return { done: response }; }
      return response.json().then(function (body) {
        var ext = body && body.extensions && body.extensions["sign-in-with-x"];
        if (!ext) { throw { sentence: "failed" }; }
        return { info: ext.info };
      });
    }).then(function (step) {
      if (step.done) { return retry({}, 0); }
      var info = step.info;
      var payload = {
        // The address as the wallet gives it (browsers have no keccak for EIP-55);
        // the server rebuilds the message from these same fields.
        domain: info.domain, address: address, statement: info.statement, uri: info.uri,
        version: info.version, chainId: terms.network, type: "eip191", nonce: info.nonce,
        issuedAt: info.issuedAt, expirationTime: info.expirationTime, resources: info.resources
      };
      var message = siwe(info, payload.address);
      var asHex = hex(new TextEncoder().encode(message));
      return eth.request({ method: "personal_sign", params: [asHex, address] }).then(function (signature) {
        payload.signature = signature;
        return retry({ "SIGN-IN-WITH-X": b64json(payload) }, 0);
      }, function (error) { throw { sentence: refused(error) ? "signin_refused" : "failed" }; });
    }).then(function () { busy(false); }, function (error) {
      busy(false);
      var sentence = error && error.sentence;
      say(sentence && sentence !== "failed" ? sentence : "not_owned");
    });
  }
  var payButton = document.getElementById("farthing-pay");
  var signInButton = document.getElementById("farthing-signin");
  if (payButton) { payButton.addEventListener("click", pay); }
  if (signInButton) { signInButton.addEventListener("click", signIn); }
}());
