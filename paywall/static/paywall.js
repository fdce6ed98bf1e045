// Farthing's paywall page: pay for the rest of an article with a browser wallet (EIP-6963
// announced wallets, else EIP-1193 window.ethereum), or sign in with the wallet that already
// paid (x402 sign-in-with-x). No framework, no eval, no inline script.
//
// What the wallet signs comes only from the paywall's terms block: the first element of
// <head>, the one element with its id (the server removes farthing-* ids from the site's
// HTML, and this script refuses a page where that does not hold), and the box's price is
// drawn from those same parsed terms, so what is signed is what is shown.
(function () {
  "use strict";
  var BROKEN = "This page's payment terms could not be read, so nothing can be paid here: reload the page.";
  function only(id) {
    var found = document.querySelectorAll('[id="' + id + '"]');
    return found.length === 1 ? found[0] : null;
  }
  var box = only("farthing-paywall");
  if (!box) { return; }
  var status = box.querySelector(".farthing-status");
  function broken() {
    var controls = box.querySelectorAll("button");
    for (var i = 0; i < controls.length; i += 1) { controls[i].disabled = true; }
    if (status) {
      status.textContent = BROKEN;
      status.setAttribute("data-state", "error");
    }
  }
  function readTerms() {
    var data = only("farthing-terms");
    if (!data || !document.head || data !== document.head.firstElementChild) { return null; }
    if (data.tagName !== "SCRIPT" || data.type !== "application/json") { return null; }
    var parsed;
    try { parsed = JSON.parse(data.textContent); } catch (e) { return null; }
    var a = parsed && parsed.accepts, price = parsed && parsed.price;
    if (!a || !price || !a.extra || !/^[0-9]+$/.test(String(a.amount))) { return null; }
    // The box's words and the signed message must come from one consistent set of terms.
    var same = String(price.amount) === String(a.amount) &&
      String(price.asset).toLowerCase() === String(a.asset).toLowerCase() &&
      price.network === a.network && parsed.network === a.network &&
      "eip155:" + Number(parsed.chainId) === a.network;
    return same ? parsed : null;
  }
  var terms = readTerms();
  if (!terms || !status) { broken(); return; }
  var accepts = terms.accepts;
  function drawPrice() {
    var line = box.querySelector(".farthing-price");
    if (!line) { return; }
    var price = terms.price;
    var fiat = price.fiatCurrency ? price.fiatAmount + " " + price.fiatCurrency : null;
    var strong = document.createElement("strong");
    strong.textContent = fiat || price.display;
    var rest = fiat ? " (" + price.display + " on " + terms.networkName + ")." : " on " + terms.networkName + ".";
    line.textContent = "Read it all for ";
    line.appendChild(strong);
    line.appendChild(document.createTextNode(rest));
  }
  drawPrice();
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
    not_owned: "This wallet has not bought this article yet: press Pay with wallet above to read it.",
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
    var buttons = box.querySelectorAll("button");
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
  // EIP-55 needs keccak-256, which browsers do not have: a small one, on BigInt lanes.
  var KECCAK_ROUNDS = (function () {
    var out = [], r = 1n;
    for (var i = 0; i < 24; i += 1) {
      var c = 0n;
      for (var j = 0; j < 7; j += 1) {
        r = ((r << 1n) ^ ((r >> 7n) * 0x71n)) % 256n;
        if (r & 2n) { c ^= 1n << ((1n << BigInt(j)) - 1n); }
      }
      out.push(c);
    }
    return out;
  }());
  var KECCAK_RHO = [1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44];
  var KECCAK_PI = [10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1];
  var MASK64 = (1n << 64n) - 1n;
  function rotl(x, n) { return ((x << BigInt(n)) | (x >> BigInt(64 - n))) & MASK64; }
  function keccakF(a) {
    for (var round = 0; round < 24; round += 1) {
      var c = [], x, y;
      for (x = 0; x < 5; x += 1) { c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20]; }
      for (x = 0; x < 5; x += 1) {
        var d = c[(x + 4) % 5] ^ rotl(c[(x + 1) % 5], 1);
        for (y = 0; y < 25; y += 5) { a[y + x] ^= d; }
      }
      var t = a[1];
      for (var i = 0; i < 24; i += 1) { var j = KECCAK_PI[i], keep = a[j]; a[j] = rotl(t, KECCAK_RHO[i]); t = keep; }
      for (y = 0; y < 25; y += 5) {
        var row = a.slice(y, y + 5);
        for (x = 0; x < 5; x += 1) { a[y + x] = row[x] ^ (~row[(x + 1) % 5] & MASK64 & row[(x + 2) % 5]); }
      }
      a[0] ^= KECCAK_ROUNDS[round];
    }
  }
  function keccak256(bytes) {
    var rate = 136, padded = new Uint8Array((Math.floor(bytes.length / rate) + 1) * rate);
    padded.set(bytes);
    padded[bytes.length] ^= 0x01;
    padded[padded.length - 1] ^= 0x80;
    var a = [], i, k;
    for (i = 0; i < 25; i += 1) { a.push(0n); }
    for (var off = 0; off < padded.length; off += rate) {
      for (i = 0; i < rate / 8; i += 1) {
        var lane = 0n;
        for (k = 7; k >= 0; k -= 1) { lane = (lane << 8n) | BigInt(padded[off + i * 8 + k]); }
        a[i] ^= lane;
      }
      keccakF(a);
    }
    var out = new Uint8Array(32);
    for (i = 0; i < 32; i += 1) { out[i] = Number((a[i >> 3] >> BigInt(8 * (i & 7))) & 0xffn); }
    return out;
  }
  function checksummed(address) {
    var lower = address.toLowerCase().replace(/^0x/, "");
    var digest = hex(keccak256(new TextEncoder().encode(lower))).slice(2);
    var out = "0x";
    for (var i = 0; i < 40; i += 1) { out += parseInt(digest[i], 16) >= 8 ? lower[i].toUpperCase() : lower[i]; }
    return out;
  }
  // EIP-6963: wallets announce themselves (several may), once on load and again on request.
  var announced = [];
  window.addEventListener("eip6963:announceProvider", function (event) {
    var detail = event.detail;
    if (!detail || !detail.info || !detail.provider || typeof detail.provider.request !== "function") { return; }
    for (var i = 0; i < announced.length; i += 1) {
      if (announced[i].info.uuid === detail.info.uuid) { return; }
    }
    announced.push(detail);
  });
  window.dispatchEvent(new Event("eip6963:requestProvider"));
  function withWallet(action) {
    // Each action asks again: a reader who picked the wrong wallet picks again.
    var old = box.querySelector(".farthing-wallets");
    if (old) { old.remove(); }
    if (announced.length === 1) { action(announced[0].provider); return; }
    if (announced.length > 1) { choose(action); return; }
    if (window.ethereum && typeof window.ethereum.request === "function") { action(window.ethereum); return; }
    say("no_wallet");
  }
  function choose(action) {
    var group = document.createElement("div");
    group.className = "farthing-wallets";
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", "Choose a wallet");
    var label = document.createElement("p");
    label.textContent = "Choose a wallet:";
    group.appendChild(label);
    announced.forEach(function (detail) {
      var button = document.createElement("button");
      button.type = "button";
      // The wallet's own words: text only, never markup, and never long.
      button.textContent = String(detail.info.name || detail.info.rdns || "Wallet").slice(0, 60);
      button.addEventListener("click", function () {
        group.remove();
        action(detail.provider);
      });
      group.appendChild(button);
    });
    box.insertBefore(group, status);
    say("", "working");
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
  function pay(eth) {
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
  function signIn(eth) {
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
        // EIP-55, as the x402 spec asks (wallets often give lowercase); the server
        // rebuilds the message from these same fields.
        domain: info.domain, address: checksummed(address), statement: info.statement, uri: info.uri,
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
  var payButton = box.querySelector('[id="farthing-pay"]');
  var signInButton = box.querySelector('[id="farthing-signin"]');
  if (payButton) { payButton.addEventListener("click", function () { withWallet(pay); }); }
  if (signInButton) { signInButton.addEventListener("click", function () { withWallet(signIn); }); }
}());
