// Drives the operator's console in headless Chromium over the DevTools protocol, as an operator
// would: log in with the token, find the dead-lettered order from the orders page, read why,
// open its dead letter, redrive it, watch the order complete; compensate another. Saves
// screenshots. Run by deploy/local/console-check.sh (node >= 20 with --experimental-websocket).
//
//   node --experimental-websocket console-check.mjs <devtools port> <console url> <token> \
//        <dead-lettered order> <order to compensate> <screenshot dir>
//   node --experimental-websocket console-check.mjs <devtools port> <console url> <token> \
//        --pages - <screenshot dir>      (the Channels and Statements pages, at two widths)

import { writeFileSync } from "node:fs";

const [port, base, token, stuckOrder, otherOrder, shots] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function fail(message) {
  console.error(`console-check: FAILED: ${message}`);
  process.exit(1);
}

const target = await (await fetch(`http://127.0.0.1:${port}/json/new?about:blank`, { method: "PUT" })).json();
const ws = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((resolve, reject) => {
  ws.onopen = resolve;
  ws.onerror = () => reject(new Error("cannot open the DevTools socket"));
});
let nextId = 0;
const pending = new Map();
ws.onmessage = (event) => {
  const message = JSON.parse(event.data);
  if (message.id && pending.has(message.id)) {
    pending.get(message.id)(message);
    pending.delete(message.id);
  }
};
function send(method, params = {}) {
  return new Promise((resolve, reject) => {
    const id = ++nextId;
    pending.set(id, (m) => (m.error ? reject(new Error(`${method}: ${JSON.stringify(m.error)}`)) : resolve(m.result)));
    ws.send(JSON.stringify({ id, method, params }));
  });
}
async function evaluate(expression) {
  const { result, exceptionDetails } = await send("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true });
  if (exceptionDetails) fail(`${expression}: ${JSON.stringify(exceptionDetails)}`);
  return result.value;
}
/** Marks the current document, so that `settled` can tell when another has replaced it. */
async function mark() {
  const from = await evaluate("window.__jifenOld = true; location.pathname + location.search");
  return from;
}
/** Waits until a new document has loaded; answers its path. */
async function settled(from) {
  for (let i = 0; i < 100; i++) {
    await sleep(100);
    const state = await evaluate("[document.readyState, typeof window.__jifenOld, location.pathname + location.search]");
    if (state[0] === "complete" && state[1] === "undefined") return state[2];
  }
  fail(`no page loaded after ${from}`);
}
async function go(path) {
  const from = await mark();
  await send("Page.navigate", { url: `${base}${path}` });
  return settled(from);
}
async function text() {
  return evaluate("document.body.innerText");
}
async function shot(name) {
  const { data } = await send("Page.captureScreenshot", { format: "png", captureBeyondViewport: false });
  writeFileSync(`${shots}/${name}.png`, Buffer.from(data, "base64"));
  console.log(`console-check: saved ${shots}/${name}.png`);
}
/** Submits the form matched by `selector` after filling `fields` ({name: value}). */
async function submit(selector, fields = {}) {
  const from = await mark();
  const found = await evaluate(`(() => {
    const form = document.querySelector(${JSON.stringify(selector)});
    if (!form) return false;
    for (const [name, value] of Object.entries(${JSON.stringify(fields)})) form.elements[name].value = value;
    form.submit();
    return true;
  })()`);
  if (!found) fail(`no form ${selector} on ${from}`);
  return settled(from);
}

await send("Page.enable");
await send("Runtime.enable");
await send("Emulation.setDeviceMetricsOverride", { width: 1280, height: 860, deviceScaleFactor: 1, mobile: false });

// Without a session nothing is shown: the login page.
// (The second run, --pages, shares the first one's browser profile and so its session.)
let at = await go("/orders");
if (stuckOrder !== "--pages" || at.startsWith("/login")) {
  if (!at.startsWith("/login")) fail(`an anonymous visit reached ${at}`);
  await submit("form.login", { token: "wrong" });
  if (!(await text()).includes("Wrong token")) fail("a wrong token was not refused");
  // The page asked for is kept through the login.
  at = await submit("form.login", { token });
  if (!at.startsWith("/orders")) fail(`login led to ${at}`);
}

if (stuckOrder === "--pages") {
  // Channels: health, the last hour's chart, pauses; then the statement report kept.
  await go("/channels");
  const channels = await text();
  if (!channels.includes("alpha") || !channels.toLowerCase().includes("auto-redrive")) fail(`the channels page: ${channels}`);
  if (!(await evaluate(`document.querySelectorAll("svg.chart").length > 0`))) fail("no chart on the channels page");
  await shot("console-channels");
  await go("/statements");
  await evaluate(`document.querySelector("a[href^='/statements/']").click()`);
  await sleep(500);
  const report = await text();
  for (const kind of ["amount_differs", "state_differs", "statement_only"]) {
    if (!report.includes(kind)) fail(`the statement report lacks ${kind}: ${report}`);
  }
  await shot("console-statement");
  // Phone width: nothing wider than the screen, even after a search that finds nothing.
  await send("Emulation.setDeviceMetricsOverride", { width: 390, height: 844, deviceScaleFactor: 2, mobile: true });
  for (const path of ["/channels", "/dead-letters?q=no+such+error+text+anywhere+in+any+dead+letter+at+all", "/orders?q=an-order-id-that-does-not-exist-anywhere-at-all-really"]) {
    await go(path);
    const width = await evaluate("document.documentElement.scrollWidth");
    if (width > 391) fail(`${path} is ${width} px wide at 390`);
  }
  await shot("console-channels-phone");
  console.log("console-check: pages ok");
  process.exit(0);
}

// The orders page flags the dead-lettered order.
at = await go("/orders?attention=1");
if (!(await text()).includes(stuckOrder)) fail(`${stuckOrder} is not among the orders needing attention`);
await shot("console-orders");
at = await mark();
await evaluate(`[...document.querySelectorAll("a")].find(a => a.textContent.trim() === ${JSON.stringify(stuckOrder)}).click()`);
at = await settled(at);
const order = await text();
if (!order.includes("needs attention") || !order.includes("Dead letters")) fail(`the order page does not say why: ${order}`);
await shot("console-order");

// Its dead letter: why, and a redrive.
at = await mark();
await evaluate(`document.querySelector("a[href^='/dead-letters/dlq']").click()`);
at = await settled(at);
const letter = await text();
if (!letter.includes("jifen.cmd.channel")) fail(`the dead letter page shows no subject: ${letter}`);
await shot("console-dead-letter");
at = await submit(`form[action$='/redrive']`, { note: "the channel is back (console check)" });
// A destructive action asks first, saying what will happen.
if (!(await text()).includes("sent again to its consumer")) fail(`the redrive did not ask for a confirmation at ${at}`);
at = await submit("form.confirm");
if (!(await text()).includes("sent again")) fail(`the redrive was not confirmed at ${at}`);

// Watch it complete.
let completed = false;
for (let i = 0; i < 60 && !completed; i++) {
  await go(`/orders/${encodeURIComponent(stuckOrder)}`);
  completed = (await text()).includes("COMPLETED");
  if (!completed) await sleep(500);
}
if (!completed) fail(`${stuckOrder} did not complete after its redrive`);
await shot("console-order-completed");

// Compensate another, with a note.
await go(`/orders/${encodeURIComponent(otherOrder)}`);
await submit(`form[action$='/compensate']`, { note: "customer cancelled at the desk (console check)" });
if (!(await text()).includes("This cannot be undone")) fail("the compensation did not ask for a confirmation");
await submit("form.confirm");
let cancelled = false;
for (let i = 0; i < 60 && !cancelled; i++) {
  await go(`/orders/${encodeURIComponent(otherOrder)}`);
  const page = await text();
  // Its channel's connector is paused by the script: the refund may still wait.
  cancelled =
    (page.includes("CANCELLED") || page.includes("COMPENSATING")) &&
    page.includes("customer cancelled at the desk");
  if (!cancelled) await sleep(500);
}
if (!cancelled) fail(`${otherOrder} was not compensated`);

// A phone-width look at the same page.
await send("Emulation.setDeviceMetricsOverride", { width: 390, height: 844, deviceScaleFactor: 2, mobile: true });
await go(`/orders/${encodeURIComponent(otherOrder)}`);
await shot("console-order-phone");

console.log("console-check: ok");
ws.close();
process.exit(0);
