/*
 * collect.js: the browser half of the collect endpoint (tiktok-eapi-gcp). No dependencies.
 * Install and options: docs/collect.md. Configure before loading:
 *
 *   window.ttCollectConfig = {
 *     endpoint: 'https://REGION-PROJECT.cloudfunctions.net/collect',
 *     pixelCode: 'C4ABC...',
 *     consent: 'manual' | 'gtag' | 'shopify' | function () { return true | false | {...} | null },
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
    return null;
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
    var consent = currentConsent();
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
    fetch(config.endpoint, {
      method: 'POST', body: body, keepalive: true, credentials: 'omit', headers: {'Content-Type': 'text/plain'},
    }).then(
      function (r) { report({transport: 'fetch', status: r.status, events: count}); },
      function () { report({transport: 'fetch', status: 0, events: count}); }
    );
  }

  function flush() {
    timer = null;
    if (disabled || !started) return;
    applyStorage();
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
    if (config.consent === 'shopify') {
      document.addEventListener('visitorConsentCollected', function () { sync(); });
      if (window.Shopify && window.Shopify.loadFeatures && !shopifyState()) {
        window.Shopify.loadFeatures([{name: 'consent-tracking-api', version: '0.1'}], function () { sync(); });
      }
    }
    window.addEventListener('pagehide', flush);
  }

  if (document.prerendering) {
    document.addEventListener('prerenderingchange', start, {once: true});
  } else {
    start();
  }
})(window, document);
