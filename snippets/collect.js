/*
 * collect.js: the browser half of the collect endpoint (tiktok-eapi-gcp). No dependencies.
 * Install and options: docs/collect.md. Configure before loading:
 *
 *   window.ttCollectConfig = {
 *     endpoint: 'https://REGION-PROJECT.cloudfunctions.net/collect',
 *     pixelCode: 'C4ABC...',
 *     consent: 'manual' | 'gtag' | 'shopify' | 'wp_consent_api' | function () { return true | false | {...} | null },
 *     platform: 'shopify' | 'woocommerce' | undefined,
 *     // A logged-in shopper: the id and its HMAC-SHA256 under COLLECT_SIGNING_SECRET, both rendered
 *     // by the store's server (docs/collect.md, "Signed customer ids"). Unsigned, the id joins nothing.
 *     customerId: '7001', customerIdSignature: '3f1c...',
 *   };
 *
 * Then: ttCollect.track('AddToCart', {currency: 'USD', value: 25}) passes one event_id to
 * ttq.track and to the endpoint, so TikTok deduplicates the browser and server events.
 */
(function (window, document) {
  'use strict';
  if (window.ttCollect && window.ttCollect.loaded) return;

  var config = window.ttCollectConfig || {};
  var THIRTY_DAYS = 30 * 24 * 3600;
  var MAX_EVENTS = config.maxEvents || 20;
  var SENT_CONTEXT = 'tt_collect_context'; // sessionStorage: the context this tab last sent (see markUnchanged)
  var PENDING = 'tt_collect_pending'; // localStorage: requests that got no 2xx, sent again on the next page
  var RETRY_DELAYS = [1000, 3000]; // then stop on this page; the next page tries once more
  var PENDING_MAX = 10;
  var PENDING_SECONDS = 24 * 3600;
  var CONSENT_WAIT = 3000; // how long the next page waits for its consent answer before resending
  var wpAnswer = null; // the WP Consent API's last change event for 'marketing': 'allow' | 'deny'
  var queued = (window.ttCollect && window.ttCollect.q) || []; // calls made before this file loaded
  var events = [];
  var timer = null;
  var manualConsent = null; // set by ttCollect.consent(...)
  var joinKeys = Object.assign({}, config.joinKeys || {});
  var started = false; // nothing is sent before start(): not while the page is prerendered
  var landingClick = param('ttclid');
  var disabled = !!(window.Shopify && window.Shopify.designMode) || !config.endpoint || !config.pixelCode;

  function param(name) {
    try {
      return new URL(window.location.href).searchParams.get(name) || null;
    } catch (e) {
      return null;
    }
  }

  function readCookie(name) {
    var prefix = name + '=';
    var parts = document.cookie ? document.cookie.split('; ') : [];
    for (var i = 0; i < parts.length; i++) {
      if (parts[i].indexOf(prefix) === 0) {
        try {
          return decodeURIComponent(parts[i].slice(prefix.length));
        } catch (e) {
          return parts[i].slice(prefix.length);
        }
      }
    }
    return null;
  }

  function writeCookie(name, value, seconds) {
    var secure = window.location.protocol === 'https:' ? '; Secure' : '';
    document.cookie = name + '=' + encodeURIComponent(value) + '; Max-Age=' + seconds + '; Path=/; SameSite=Lax' + secure;
  }

  function randomId() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    var bytes = window.crypto.getRandomValues(new Uint8Array(16));
    return Array.prototype.map.call(bytes, function (b) { return ('0' + b.toString(16)).slice(-2); }).join('');
  }

  // --- consent: what the page knows, sent as is; the endpoint applies the pixel's policy ---

  function consentModeState() {
    // gtag('consent', 'default' | 'update', {...}) pushes its arguments to the dataLayer, in order.
    var layer = window[config.dataLayerName || 'dataLayer'];
    if (!layer || !layer.length) return null;
    var state = null;
    for (var i = 0; i < layer.length; i++) {
      var item = layer[i];
      if (item && item[0] === 'consent' && (item[1] === 'default' || item[1] === 'update') && item[2]) {
        state = state || {};
        ['ad_storage', 'ad_user_data', 'ad_personalization'].forEach(function (name) {
          if (item[2][name] === 'granted' || item[2][name] === 'denied') state[name] = item[2][name];
        });
      }
    }
    return state;
  }

  function shopifyState() {
    var privacy = window.Shopify && window.Shopify.customerPrivacy;
    if (!privacy || typeof privacy.marketingAllowed !== 'function') return null;
    return {marketingAllowed: !!privacy.marketingAllowed(), saleOfDataAllowed: !!privacy.saleOfDataAllowed()};
  }

  function wpConsentState() {
    // WP Consent API (WordPress): wp_has_consent('marketing') is true or false, false also before any answer; the
    // change event and the plugin's cookie (wp_consent_marketing) tell an explicit "deny" from "not answered yet".
    if (typeof window.wp_has_consent !== 'function') return null;
    var prefix = (window.consent_api && window.consent_api.cookie_prefix) || 'wp_consent';
    var answer = wpAnswer || readCookie(prefix + '_marketing');
    var allowed;
    try {
      allowed = !!window.wp_has_consent('marketing');
    } catch (e) {
      return null;
    }
    if (allowed) return {granted: true};
    return answer === 'deny' ? {granted: false} : null;
  }

  function currentConsent() {
    if (manualConsent !== null) return manualConsent;
    var source = config.consent || 'manual';
    if (typeof source === 'function') {
      try {
        var value = source();
        return value === undefined ? null : value;
      } catch (e) {
        return null;
      }
    }
    if (source === 'gtag') return consentModeState();
    if (source === 'shopify') return shopifyState();
    if (source === 'wp_consent_api') return wpConsentState();
    return null;
  }

  function withGpc(consent) {
    // Global Privacy Control: the browser's opt-out of the sale and sharing of data, forwarded as consent.gpc.
    if (navigator.globalPrivacyControl !== true) return consent;
    if (consent === null) return {gpc: true};
    if (consent === true || consent === false) return {granted: consent, gpc: true};
    return Object.assign({}, consent, {gpc: true});
  }

  function storageAllowed() {
    // First-party cookies and cart attributes are written only with consent, unless told otherwise.
    if (config.waitForConsent === false) return true;
    var c = currentConsent();
    if (c === true) return true;
    if (!c || typeof c !== 'object') return false;
    if (c.granted === false || c.marketingAllowed === false || c.ad_storage === 'denied') return false;
    return c.granted === true || c.marketingAllowed === true || c.ad_storage === 'granted';
  }

  function consentAnswer() {
    // The endpoint's reading (shared/domain/consent.py): 'granted', 'denied' or null (the pixel's policy decides).
    var c = currentConsent();
    if (c === true || c === false) return c ? 'granted' : 'denied';
    if (!c || typeof c !== 'object') return null;
    if (c.granted === false || c.marketingAllowed === false || c.ad_storage === 'denied' ||
        c.ad_user_data === 'denied') return 'denied';
    if (c.granted === true || c.marketingAllowed === true ||
        (c.ad_storage === 'granted' && c.ad_user_data === 'granted')) return 'granted';
    return null;
  }

  // --- click ids and join keys ---

  function clickId() {
    return landingClick || readCookie('ttclid');
  }

  function applyStorage() {
    if (config.platform === 'woocommerce') {
      // The checkout snippet (docs/woocommerce.md) copies this answer into the order meta _tt_consent.
      var answer = consentAnswer();
      if (answer && readCookie('tt_consent') !== answer) writeCookie('tt_consent', answer, 365 * 24 * 3600);
    }
    if (!storageAllowed()) return Promise.resolve();
    if (landingClick && readCookie('ttclid') !== landingClick) writeCookie('ttclid', landingClick, THIRTY_DAYS);
    if (config.platform === 'shopify' && joinKeys.customer_id_signature) {
      // For the custom pixel, which runs in a sandbox without the theme's Liquid: the signed id.
      var signed = joinKeys.customer_id + '.' + joinKeys.customer_id_signature;
      if (readCookie('tt_customer') !== signed) writeCookie('tt_customer', signed, THIRTY_DAYS);
    }
    if (config.platform === 'woocommerce') {
      var session = readCookie('tt_session');
      if (!session) writeCookie('tt_session', (session = randomId().replace(/-/g, '')), THIRTY_DAYS);
      joinKeys.woocommerce_session = session;
    }
    return config.platform === 'shopify' ? writeCartAttributes() : Promise.resolve();
  }

  function platformKeys() {
    if (config.customerId) {
      joinKeys.customer_id = String(config.customerId);
      if (config.customerIdSignature) joinKeys.customer_id_signature = String(config.customerIdSignature);
    }
    if (config.platform === 'shopify') {
      var meta = window.ShopifyAnalytics && window.ShopifyAnalytics.meta;
      var customer = meta && meta.page && meta.page.customerId;
      if (customer && !joinKeys.customer_id) joinKeys.customer_id = String(customer);
    }
    if (config.platform === 'woocommerce') {
      var session = readCookie('tt_session');
      if (session) joinKeys.woocommerce_session = session;
      var orderKey = param('key');
      if (orderKey && orderKey.indexOf('wc_order_') === 0) joinKeys.woocommerce_order_key = orderKey;
    }
  }

  function rememberCart(cart) {
    if (cart && cart.token) joinKeys.shopify_cart_token = cart.token; // the endpoint drops its ?key= part
    return cart;
  }

  var cartRead = null;
  function shopifyCart() {
    if (!cartRead) {
      cartRead = fetch('/cart.js', {credentials: 'same-origin'})
        .then(function (r) { return r.json(); })
        .then(rememberCart, function () { cartRead = null; return null; });
    }
    return cartRead;
  }

  var cartWritten = {};
  function writeCartAttributes() {
    // Shopify copies cart attributes into the order's note_attributes: the webhook reads _ttclid and _ttp.
    var wanted = {};
    var click = clickId();
    var ttp = readCookie('_ttp');
    if (click) wanted._ttclid = click;
    if (ttp) wanted._ttp = ttp;
    var changed = Object.keys(wanted).filter(function (k) { return cartWritten[k] !== wanted[k]; });
    changed.forEach(function (k) { cartWritten[k] = wanted[k]; });
    return shopifyCart().then(function (cart) {
      var attributes = (cart && cart.attributes) || {};
      var update = {};
      changed.forEach(function (k) { if (attributes[k] !== wanted[k]) update[k] = wanted[k]; });
      if (!cart || !Object.keys(update).length) return null;
      return fetch('/cart/update.js', {
        method: 'POST',
        credentials: 'same-origin',
        headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({attributes: update}),
      }).then(function (r) { return r.json(); }).then(rememberCart);
    }).catch(function () { cartWritten = {}; });
  }

  // --- sending ---

  function payload(batch) {
    var body = {
      pixel_code: config.pixelCode,
      context: {
        page_url: window.location.href.slice(0, 2048),
        referrer: document.referrer ? document.referrer.slice(0, 2048) : undefined,
        locale: navigator.language || undefined,
        ttclid: clickId() || undefined,
        ttp: readCookie('_ttp') || undefined,
        join_keys: joinKeys,
      },
      events: batch,
    };
    var consent = withGpc(currentConsent());
    if (consent !== null) body.consent = consent;
    if (config.key) body.key = config.key;
    if (config.user) body.context.user = typeof config.user === 'function' ? config.user() : config.user;
    markUnchanged(body);
    return JSON.stringify(body);
  }

  // The context this tab already sent (its page aside): saying so lets collect skip rewriting it. Only a hint:
  // collect still writes anything its instance did not itself write just so (docs/collect.md, Click context writes).
  function markUnchanged(body) {
    var context = body.context;
    var sent = JSON.stringify([body.consent, context.ttclid, context.ttp, context.locale, context.join_keys,
      context.user]);
    try {
      if (window.sessionStorage.getItem(SENT_CONTEXT) === sent) context.unchanged = true;
      else window.sessionStorage.setItem(SENT_CONTEXT, sent);
    } catch (e) { /* storage blocked: every request carries its context, as before */ }
  }

  function report(result) {
    if (typeof config.onSend === 'function') {
      try { config.onSend(result); } catch (e) { /* a debugging hook must never break sending */ }
    }
  }

  function send(body, count) {
    // text/plain: no CORS preflight; sendBeacon survives page unloads, fetch keepalive is the fallback.
    if (config.transport !== 'fetch' && navigator.sendBeacon) {
      try {
        if (navigator.sendBeacon(config.endpoint, body)) return report({transport: 'beacon', events: count});
      } catch (e) { /* fall through to fetch */ }
    }
    post(body, count, 0);
  }

  // --- a request that got no 2xx is sent again: 1 s, 3 s later, then on the next page (fetch only) ---
  // Its events go again only with it (never acknowledged); the endpoint, the sender and TikTok deduplicate
  // on event_id. A request whose consent is no longer the page's is dropped, never resent over a newer answer.
  // Each entry remembers the page that kept it: that page's own timers retry it, and only a later page (or
  // another tab) resends it, so a flush on the same page (an event, a consent change, pagehide) never sends
  // it a second time while its retry is due or already on its way.

  var pageId = randomId();

  function retryable(status) {
    return status === 0 || status === 408 || status === 429 || status >= 500;
  }

  function retryAfter(value) {
    // Retry-After: delay-seconds or an HTTP-date (RFC 9110); anything else is no hint.
    if (!value) return 0;
    if (/^\s*\d+\s*$/.test(value)) return parseInt(value, 10) * 1000;
    var at = Date.parse(value);
    return isFinite(at) ? Math.max(0, at - Date.now()) : 0;
  }

  function post(body, count, attempt) {
    fetch(config.endpoint, {
      method: 'POST', body: body, keepalive: true, credentials: 'omit', headers: {'Content-Type': 'text/plain'},
    }).then(
      function (r) {
        report({transport: 'fetch', status: r.status, events: count, attempt: attempt});
        if (!retryable(r.status)) return settle(body);
        retryLater(body, count, attempt, retryAfter(r.headers.get('Retry-After')));
      },
      function () {
        report({transport: 'fetch', status: 0, events: count, attempt: attempt});
        retryLater(body, count, attempt, 0);
      }
    );
  }

  function retryLater(body, count, attempt, after) {
    var again = resendable(body);
    if (attempt === 0) {
      try { window.sessionStorage.removeItem(SENT_CONTEXT); } catch (e) { /* later requests carry it anyway */ }
    }
    var stored = keep(body, again);
    if (attempt >= RETRY_DELAYS.length) return; // the next page tries again
    setTimeout(function () {
      // Settled meanwhile (by another tab's resend) or dropped; without storage, this page's retries go anyway.
      if (stored && !pendingList().some(function (p) { return p.b === again; })) return;
      if (!sameConsent(again)) return settle(again);
      post(again, count, attempt + 1);
    }, Math.min(Math.max(RETRY_DELAYS[attempt], after), 60000));
  }

  function resendable(body) {
    // A resent context is written whatever the page said the first time: drop its "unchanged" hint.
    try {
      var parsed = JSON.parse(body);
      if (parsed.context) delete parsed.context.unchanged;
      return JSON.stringify(parsed);
    } catch (e) {
      return body;
    }
  }

  function canonical(value) {
    // JSON with object keys sorted: the same answer compares equal whatever order its source wrote it in.
    if (value === undefined || value === null) return 'null';
    if (Array.isArray(value)) return '[' + value.map(canonical).join(',') + ']';
    if (typeof value === 'object') {
      return '{' + Object.keys(value).sort().filter(function (k) { return value[k] !== undefined; })
        .map(function (k) { return JSON.stringify(k) + ':' + canonical(value[k]); }).join(',') + '}';
    }
    return JSON.stringify(value);
  }

  function sameConsent(body) {
    // The answer the request carried (absent: none) against the page's now. null and false stay apart: a
    // request sent before any answer is not resent over a later "no".
    try {
      return canonical(JSON.parse(body).consent) === canonical(withGpc(currentConsent()));
    } catch (e) {
      return false;
    }
  }

  function pendingList() {
    try {
      var list = JSON.parse(window.localStorage.getItem(PENDING) || '[]');
      return Array.isArray(list) ? list.filter(function (p) { return p && typeof p.b === 'string'; }) : [];
    } catch (e) {
      return [];
    }
  }

  function savePending(list) {
    // True when stored; false when storage is blocked or full (private mode): retries on this page only.
    try {
      if (list.length) window.localStorage.setItem(PENDING, JSON.stringify(list.slice(-PENDING_MAX)));
      else window.localStorage.removeItem(PENDING);
      return true;
    } catch (e) {
      return false;
    }
  }

  function keep(body, again) {
    // One entry per request, owned by this page; it keeps the time of its first failure, so the 24 h
    // limit holds however many pages tried it since.
    var oldest = Date.now() - PENDING_SECONDS * 1000;
    var first = Date.now();
    var list = pendingList().filter(function (p) {
      if (p.b !== body && p.b !== again) return p.t >= oldest;
      if (p.t < first) first = p.t;
      return false;
    });
    list.push({b: again, t: first, p: pageId});
    return savePending(list);
  }

  function settle(body) {
    var again = resendable(body);
    var list = pendingList();
    var left = list.filter(function (p) { return p.b !== body && p.b !== again; });
    if (left.length !== list.length) savePending(left);
  }

  function consentTold() {
    // Whether the page has told the shopper's answer yet. Consent Mode's 'default' (usually all denied) is
    // not one: a consent platform pushes its stored answer as an 'update', possibly after this file starts.
    if (manualConsent !== null) return true;
    if (config.consent === 'gtag') {
      var layer = window[config.dataLayerName || 'dataLayer'] || [];
      for (var i = 0; i < layer.length; i++) {
        if (layer[i] && layer[i][0] === 'consent' && layer[i][1] === 'update') return true;
      }
      return false;
    }
    return currentConsent() !== null;
  }

  var resent = false;
  var leaving = false; // pagehide: the page's own requests still go (keepalive), no earlier page's
  var waited = false;
  var waiting = null;
  function resendPending() {
    // What an earlier page could not deliver, once per page, if the shopper's consent is still what it said.
    // This page's own entries are left to its timers (then to the next page). Not while the page unloads: the
    // answer would never be read, and the next page would send it again.
    if (resent || leaving || disabled || !started) return;
    var list = pendingList().filter(function (p) { return p.p !== pageId; });
    if (!list.length) return;
    var told = consentTold();
    if (!told && !waited) {
      // Not told yet: a banner or consent platform usually tells its stored answer just after this file starts,
      // and a "no" given since must win. A page that tells nothing (no banner) resends what still matches then.
      if (!waiting) waiting = setTimeout(function () { waited = true; resendPending(); }, CONSENT_WAIT);
      return;
    }
    resent = true;
    var oldest = Date.now() - PENDING_SECONDS * 1000;
    list.forEach(function (p) {
      if (!(p.t >= oldest)) return settle(p.b);
      if (!sameConsent(p.b)) return told ? settle(p.b) : undefined; // untold: kept for a page that tells
      var count = 0;
      try { count = (JSON.parse(p.b).events || []).length; } catch (e) { /* counted as none */ }
      post(p.b, count, RETRY_DELAYS.length);
    });
  }

  function flush() {
    timer = null;
    if (disabled || !started) return;
    applyStorage();
    resendPending();
    while (events.length) {
      var batch = events.splice(0, MAX_EVENTS);
      send(payload(batch), batch.length);
    }
  }

  function schedule() {
    if (!timer) timer = setTimeout(flush, 0);
  }

  function track(name, properties, options) {
    var eventId = (options && options.event_id) || randomId();
    if (window.ttq && typeof window.ttq.track === 'function') {
      window.ttq.track(name, properties || {}, {event_id: eventId});
    }
    events.push({
      event: name,
      event_id: eventId,
      event_time: Date.now(),
      properties: properties || {},
      page: {url: window.location.href.slice(0, 2048)},
    });
    schedule();
    return eventId;
  }

  function sync() {
    // The click context alone (no events): for the order webhooks to join on later.
    if (disabled || !started) return;
    resendPending();
    applyStorage().then(function () {
      if (Object.keys(joinKeys).length) send(payload([]), 0);
    });
  }

  function consent(value) {
    manualConsent = value === undefined ? null : value;
    if (events.length) flush(); // the events carry the context and the new consent
    else sync();
  }

  var api = {loaded: true, track: track, consent: consent, sync: sync, flush: flush};
  window.ttCollect = api;

  function start() {
    started = true;
    platformKeys();
    queued.forEach(function (call) { if (api[call[0]]) api[call[0]].apply(null, call[1]); });
    if (clickId() || readCookie('_ttp')) sync();
    else applyStorage();
    if (events.length) schedule();
    resendPending();
    if (config.consent === 'wp_consent_api') {
      // WP Consent API: document event with detail {marketing: 'allow' | 'deny', ...} when the banner changes it.
      document.addEventListener('wp_listen_for_consent_change', function (event) {
        var detail = (event && event.detail) || {};
        if (detail.marketing !== 'allow' && detail.marketing !== 'deny') return;
        wpAnswer = detail.marketing;
        sync();
      });
    }
    if (config.consent === 'shopify') {
      document.addEventListener('visitorConsentCollected', function () { sync(); });
      if (window.Shopify && window.Shopify.loadFeatures && !shopifyState()) {
        window.Shopify.loadFeatures([{name: 'consent-tracking-api', version: '0.1'}], function () { sync(); });
      }
    }
    window.addEventListener('pagehide', function () {
      leaving = true;
      flush();
    });
    window.addEventListener('pageshow', function (event) {
      if (event.persisted) leaving = false; // back from the back/forward cache: the same page, alive again
    });
  }

  if (document.prerendering) {
    document.addEventListener('prerenderingchange', start, {once: true});
  } else {
    start();
  }
})(window, document);
