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
  return {marketingAllowed: !!privacy.marketingAllowed, saleOfDataAllowed: !!privacy.saleOfDataAllowed};
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
  // text/plain and no-cors: no preflight; the answer is not needed (the endpoint logs its outcome).
  await fetch(COLLECT.endpoint, {
    method: 'POST', mode: 'no-cors', keepalive: true, credentials: 'omit',
    headers: {'Content-Type': 'text/plain'}, body: JSON.stringify(body),
  });
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
