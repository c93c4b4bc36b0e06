// Swagger UI, used as a person would, in headless Chromium: the service runs
// with authentication on; the page's Authorize dialog takes a bearer token,
// then "Try it out" places an order (201) and reads it back (200).
//
//   node .ci/swagger-ui.mjs SERVICE_BINARY SCREENSHOT_DIR
//
// The RSA key and the token are made here; the service reads the public key
// from a file. Exits non-zero, with the page's screenshot kept, on failure.
import { spawn } from "node:child_process";
import { generateKeyPairSync, sign } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [binary, shots] = process.argv.slice(2);
const port = 18710;
const base = `http://127.0.0.1:${port}`;
const dir = mkdtempSync(join(tmpdir(), "swagger-ui-"));

const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
writeFileSync(join(dir, "public.pem"), publicKey.export({ type: "spki", format: "pem" }));
const b64url = (value) => Buffer.from(value).toString("base64url");
const now = Math.floor(Date.now() / 1000);
const unsigned = `${b64url(JSON.stringify({ alg: "RS256", typ: "JWT" }))}.${b64url(
  JSON.stringify({ sub: "swagger-ui-user", aud: "orders-api", iat: now, exp: now + 3600 }),
)}`;
const token = `${unsigned}.${sign("sha256", Buffer.from(unsigned), privateKey).toString("base64url")}`;

const service = spawn(binary, [], {
  env: {
    ...process.env,
    DB_URL: `sqlite://${join(dir, "orders.db")}`,
    PORT: String(port),
    // Any free port: other checks may run a server beside this one.
    OPS_ADDR: "127.0.0.1:0",
    AUTH_ON: "true",
    JWT_PUBLIC_KEY_FILE: join(dir, "public.pem"),
    JWT_AUDIENCE: "orders-api",
    RUST_LOG: "warn",
  },
  stdio: ["ignore", "inherit", "inherit"],
});

async function ready() {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${base}/readyz`)).ok) return;
    } catch {}
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error("the service did not become ready");
}

// The live response of an operation that was just executed.
async function executed(operation, expected) {
  const status = operation.locator(".live-responses-table tr.response .response-col_status").first();
  await status.waitFor({ timeout: 15000 });
  const code = (await status.innerText()).trim();
  if (code !== String(expected)) {
    throw new Error(`expected ${expected}, the page shows ${code}`);
  }
  const body = await operation.locator(".live-responses-table .microlight").first().innerText();
  return JSON.parse(body);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 2000 } });
let failed = false;
try {
  await ready();
  await page.goto(`${base}/docs/orders/`);
  await page.locator(".auth-wrapper .authorize").click();
  const dialog = page.locator(".modal-ux");
  await dialog.locator("input").first().fill(token);
  await dialog.locator(".auth-btn-wrapper .authorize").click();
  await dialog.locator(".auth-btn-wrapper .btn-done").click();

  const create = page.locator("#operations-orders-create_order");
  await create.locator(".opblock-summary").click();
  await create.locator(".try-out__btn").click();
  await create
    .locator("textarea.body-param__text")
    .fill(JSON.stringify({ order: [{ product: "cappuccino", size: "big", quantity: 2 }] }));
  await create.locator(".execute").click();
  const order = await executed(create, 201);
  console.log(`POST /orders: 201, order ${order.id} (${order.status})`);

  const read = page.locator("#operations-orders-get_order");
  await read.locator(".opblock-summary").click();
  await read.locator(".try-out__btn").click();
  await read.locator(".parameters input").first().fill(order.id);
  await read.locator(".execute").click();
  const fetched = await executed(read, 200);
  if (fetched.id !== order.id) throw new Error(`read back ${fetched.id}, not ${order.id}`);
  console.log(`GET /orders/{order_id}: 200, order ${fetched.id}`);
} catch (error) {
  failed = true;
  console.error(`Swagger UI check failed: ${error.message}`);
} finally {
  await page.screenshot({ path: join(shots, "swagger-ui.png"), fullPage: true });
  console.log(`screenshot: ${join(shots, "swagger-ui.png")}`);
  await browser.close();
  service.kill();
}
process.exit(failed ? 1 : 0);
