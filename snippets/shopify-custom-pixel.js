// Shopify custom pixel for the collect endpoint (tiktok-eapi-gcp). See docs/collect.md, "Shopify".
//
// Shopify admin > Settings > Customer events > Add custom pixel: paste this file, fill in COLLECT,
// set "Customer privacy" to "Not required" (the pixel forwards the shopper's consent; the endpoint
// stores and sends nothing without it), Save, then Connect.
//
// What it does:
// - product_viewed / product_added_to_cart: ViewContent / AddToCart to collect, with Shopify's event
//   id, which is also passed to ttq.track when TikTok's pixel runs in this sandbox (paste TikTok's base
//   code above this file), so TikTok deduplicates the two;
// - checkout_started / checkout_completed: no event to collect, only the click context (ttclid, _ttp,
//   consent, hashed email and phone) stored under the checkout token, which the order webhook joins
//   on. The webhook sends InitiateCheckout and Purchase once, with consent decided once; ttq gets the
//   same event ids ('shopify:<shop>.myshopify.com:order:<order id>:Purchase').
const COLLECT = {
  endpoint: 'https://REGION-PROJECT.cloudfunctions.net/collect',
  pixelCode: 'YOUR_TIKTOK_PIXEL_CODE',
  // One of the pixel's COLLECT_KEYS: public, it only says which pixel this is (the sandbox sends no Origin).
  key: 'YOUR_PUBLIC_COLLECT_KEY',
  // false when another pixel (e.g. TikTok's sales channel app) already reports ViewContent and AddToCart:
  // this pixel then only stores the checkout's click context, and nothing is counted twice.
  browserEvents: true,
};

const THIRTY_DAYS = 30 * 24 * 3600;
let privacy = init.customerPrivacy || {};
api.customerPrivacy.subscribe('visitorConsentCollected', (event) => {
  privacy = event.customerPrivacy || privacy;
});

function consent() {
  const answer = {marketingAllowed: !!privacy.marketingAllowed, saleOfDataAllowed: !!privacy.saleOfDataAllowed};
  // Global Privacy Control (the browser's opt-out of sale and sharing), where the sandbox exposes it.
  const nav = (init.context && init.context.navigator) || {};
  if (nav.globalPrivacyControl === true || (self.navigator && self.navigator.globalPrivacyControl === true)) {
    answer.gpc = true;
  }
  return answer;
}

function lastSegment(id) {
  // Shopify ids may be gid://shopify/Order/123 or plain numbers; the cart id keeps no ?key= secret.
  return id === undefined || id === null ? undefined : String(id).split('/').pop().split('?')[0];
}

function pageUrl(event) {
  const location = (event.context && event.context.document && event.context.document.location) ||
    (init.context && init.context.document && init.context.document.location) || {};
  return location.href || '';
}

async function cookie(name) {
  const value = await browser.cookie.get(name);
  try {
    return value ? decodeURIComponent(value) : undefined;
  } catch (e) {
    return value || undefined;
  }
}

async function context(event, joinKeys, user) {
  const href = pageUrl(event);
  let landing;
  try {
    landing = new URL(href).searchParams.get('ttclid') || undefined;
  } catch (e) {
    landing = undefined;
  }
  const [stored, ttp] = await Promise.all([cookie('ttclid'), cookie('_ttp')]);
  if (landing && landing !== stored && privacy.marketingAllowed) {
    await browser.cookie.set(`ttclid=${encodeURIComponent(landing)}; max-age=${THIRTY_DAYS}; path=/; samesite=lax`);
  }
  const keys = Object.assign({}, joinKeys);
  const customer = lastSegment(init.data && init.data.customer && init.data.customer.id);
  if (customer) {
    // Unsigned, the id only tags the context for customers/redact; it becomes a join key with the
    // signature the theme's collect.js keeps in the tt_customer cookie ("<id>.<hmac>", docs/collect.md).
    keys.customer_id = customer;
    const signed = (await cookie('tt_customer')) || '';
    const dot = signed.lastIndexOf('.');
    if (dot > 0 && signed.slice(0, dot) === customer) keys.customer_id_signature = signed.slice(dot + 1);
  }
  const cart = lastSegment(init.data && init.data.cart && init.data.cart.id);
  if (cart && !keys.shopify_checkout_token) keys.shopify_cart_token = cart;
  return {
    ttclid: landing || stored,
    ttp: ttp,
    page_url: href.slice(0, 2048) || undefined,
    locale: (init.context && init.context.navigator && init.context.navigator.language) || undefined,
    join_keys: keys,
    user: Object.assign({external_id: customer ? [customer] : []}, user || {}),
  };
}

function ttqTrack(name, properties, eventId) {
  if (typeof self.ttq !== 'undefined' && typeof self.ttq.track === 'function') {
    self.ttq.track(name, properties, {event_id: eventId});
  }
}

// The context this session already sent (its page aside): saying so lets collect skip rewriting it. Only a
// hint: collect still writes anything its instance did not itself write just so (docs/collect.md).
async function markUnchanged(body) {
  const c = body.context;
  const sent = JSON.stringify([body.consent, c.ttclid, c.ttp, c.locale, c.join_keys, c.user]);
  try {
    if ((await browser.sessionStorage.getItem('tt_collect_context')) === sent) c.unchanged = true;
    else await browser.sessionStorage.setItem('tt_collect_context', sent);
  } catch (e) {
    // storage unavailable: every request carries its context, as before
  }
}

async function send(event, joinKeys, user, events) {
  const body = {
    pixel_code: COLLECT.pixelCode,
    key: COLLECT.key,
    consent: consent(),
    context: await context(event, joinKeys, user),
    events: events,
  };
  await markUnchanged(body);
  await resendPending();
  await post(JSON.stringify(body), 0);
}

// --- a request that got no 2xx is sent again: 1 s, 3 s later, then when the pixel next loads ---
// Its events go again only with it (never acknowledged); collect, the sender and TikTok deduplicate on
// event_id. A request whose consent is no longer the shopper's is dropped, never resent over a newer answer.
// Each entry remembers the pixel load that kept it: that load's timers retry it, only a later load resends it.
const PENDING = 'tt_collect_pending';
const RETRY_DELAYS = [1000, 3000];
const PENDING_MAX = 10;
const PENDING_MS = 24 * 3600 * 1000;
const LOAD_ID = `${Date.now().toString(36)}.${Math.random().toString(36).slice(2)}`;
let resent = false;

function retryable(status) {
  return status === 0 || status === 408 || status === 429 || status >= 500;
}

function retryAfter(value) {
  // Retry-After: delay-seconds or an HTTP-date (RFC 9110); anything else is no hint.
  if (!value) return 0;
  if (/^\s*\d+\s*$/.test(value)) return parseInt(value, 10) * 1000;
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : 0;
}

async function post(body, attempt) {
  let status = 0;
  let after = 0;
  try {
    // text/plain: no preflight. collect answers this keyed request's opaque origin ("null"), so its status is read.
    const response = await fetch(COLLECT.endpoint, {
      method: 'POST', mode: 'cors', keepalive: true, credentials: 'omit',
      headers: {'Content-Type': 'text/plain'}, body: body,
    });
    status = response.status;
    after = retryAfter(response.headers.get('Retry-After'));
  } catch (e) {
    status = 0; // a network error, or an answer the sandbox may not read
  }
  if (!retryable(status)) return settle(body);
  const again = resendable(body);
  if (attempt === 0) {
    try { await browser.sessionStorage.removeItem('tt_collect_context'); } catch (e) { /* carried anyway */ }
  }
  const stored = await keep(body, again);
  if (attempt >= RETRY_DELAYS.length) return; // the next page tries again
  await new Promise((resolve) => setTimeout(resolve, Math.min(Math.max(RETRY_DELAYS[attempt], after), 60000)));
  // Settled meanwhile (another load resent it) or dropped; without storage, this load's retries go anyway.
  if (stored && !(await pendingList()).some((p) => p.b === again)) return;
  if (!sameConsent(again)) return settle(again);
  return post(again, attempt + 1);
}

function resendable(body) {
  // A resent context is written whatever the first attempt said: drop its "unchanged" hint.
  try {
    const parsed = JSON.parse(body);
    if (parsed.context) delete parsed.context.unchanged;
    return JSON.stringify(parsed);
  } catch (e) {
    return body;
  }
}

function canonical(value) {
  // JSON with object keys sorted: the same answer compares equal whatever order it was written in.
  if (value === undefined || value === null) return 'null';
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (typeof value === 'object') {
    return `{${Object.keys(value).sort().filter((k) => value[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function sameConsent(body) {
  try {
    return canonical(JSON.parse(body).consent) === canonical(consent());
  } catch (e) {
    return false;
  }
}

// browser.localStorage is asynchronous: each read-modify-write of the list runs alone, so two requests
// failing together cannot overwrite each other's entry.
let storageTurn = Promise.resolve();
function exclusively(task) {
  const run = storageTurn.then(task, task);
  storageTurn = run.catch(() => {});
  return run;
}

async function pendingList() {
  try {
    const list = JSON.parse((await browser.localStorage.getItem(PENDING)) || '[]');
    return Array.isArray(list) ? list.filter((p) => p && typeof p.b === 'string') : [];
  } catch (e) {
    return [];
  }
}

async function savePending(list) {
  // True when stored; false when storage is unavailable or full: retries within this load only.
  try {
    if (list.length) await browser.localStorage.setItem(PENDING, JSON.stringify(list.slice(-PENDING_MAX)));
    else await browser.localStorage.removeItem(PENDING);
    return true;
  } catch (e) {
    return false;
  }
}

function keep(body, again) {
  // One entry per request, owned by this load; it keeps the time of its first failure, so the 24 h limit
  // holds however many loads tried it since.
  return exclusively(async () => {
    const oldest = Date.now() - PENDING_MS;
    let first = Date.now();
    const list = (await pendingList()).filter((p) => {
      if (p.b !== body && p.b !== again) return p.t >= oldest;
      first = Math.min(first, p.t);
      return false;
    });
    list.push({b: again, t: first, p: LOAD_ID});
    return savePending(list);
  });
}

function settle(body) {
  return exclusively(async () => {
    const again = resendable(body);
    const list = await pendingList();
    const left = list.filter((p) => p.b !== body && p.b !== again);
    if (left.length !== list.length) await savePending(left);
  });
}

async function resendPending() {
  // What an earlier load could not deliver, once per load, if the shopper's consent is still what it said.
  if (resent) return;
  resent = true;
  const oldest = Date.now() - PENDING_MS;
  for (const p of await pendingList()) {
    if (p.p === LOAD_ID) continue; // this load's own: its timers retry it
    if (!(p.t >= oldest) || !sameConsent(p.b)) await settle(p.b);
    else post(p.b, RETRY_DELAYS.length);
  }
}

function money(value) {
  return value && value.amount !== undefined ? Number(value.amount) : undefined;
}

function variantProperties(variant, quantity) {
  const price = money(variant.price);
  return {
    content_type: 'product',
    currency: variant.price && variant.price.currencyCode,
    value: price === undefined ? undefined : price * (quantity || 1),
    contents: [{
      content_id: lastSegment(variant.id),
      content_name: variant.product && variant.product.title,
      price: price,
      quantity: quantity || 1,
    }],
  };
}

function browserEvent(name, event, properties) {
  ttqTrack(name, properties, event.id);
  return {event: name, event_id: event.id, event_time: Date.parse(event.timestamp) || Date.now(), properties};
}

analytics.subscribe('product_viewed', (event) => {
  const variant = event.data && event.data.productVariant;
  if (!variant || !COLLECT.browserEvents) return;
  send(event, {}, null, [browserEvent('ViewContent', event, variantProperties(variant, 1))]);
});

analytics.subscribe('product_added_to_cart', (event) => {
  const line = event.data && event.data.cartLine;
  if (!line || !line.merchandise || !COLLECT.browserEvents) return;
  send(event, {}, null, [browserEvent('AddToCart', event, variantProperties(line.merchandise, line.quantity))]);
});

function checkoutUser(checkout) {
  return {email: checkout.email ? [checkout.email] : [], phone: checkout.phone ? [checkout.phone] : []};
}

function checkoutProperties(checkout) {
  return {
    content_type: 'product',
    currency: checkout.currencyCode || (checkout.totalPrice && checkout.totalPrice.currencyCode),
    value: money(checkout.totalPrice),
    contents: (checkout.lineItems || []).filter((item) => item.variant).map((item) => ({
      content_id: lastSegment(item.variant.id),
      content_name: item.title,
      price: money(item.variant.price),
      quantity: item.quantity,
    })),
  };
}

analytics.subscribe('checkout_started', (event) => {
  const checkout = event.data && event.data.checkout;
  if (!checkout || !checkout.token) return;
  const shop = init.data.shop.myshopifyDomain;
  const eventId = 'shopify:' + shop + ':order:checkout-' + checkout.token + ':InitiateCheckout';
  ttqTrack('InitiateCheckout', checkoutProperties(checkout), eventId);
  send(event, {shopify_checkout_token: checkout.token}, checkoutUser(checkout), []);
});

analytics.subscribe('checkout_completed', (event) => {
  const checkout = event.data && event.data.checkout;
  if (!checkout || !checkout.token) return;
  const orderId = lastSegment(checkout.order && checkout.order.id);
  if (orderId) {
    const eventId = 'shopify:' + init.data.shop.myshopifyDomain + ':order:' + orderId + ':Purchase';
    ttqTrack('Purchase', checkoutProperties(checkout), eventId);
  }
  send(event, {shopify_checkout_token: checkout.token}, checkoutUser(checkout), []);
});
