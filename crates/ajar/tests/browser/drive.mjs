// Runs one browser scenario against a running `ajar serve` in headless Chromium.
//
//   node drive.mjs SCENARIO.json
//   node drive.mjs '{"baseUrl": …}'
//
// The scenario (a file, or the JSON itself as the argument):
//
//   {
//     "baseUrl": "https://127.0.0.1:8443",   // loopback only
//     "caFile": "/path/to/data/tls/ca.pem",  // the CA the server's certificate chains to
//     "outDir": "/path/to/screenshots",      // created if missing
//     "steps": [
//       {"goto": "/healthz"},                // path or URL on baseUrl; the response must be 2xx
//       {"goto": "/x", "status": 404},       // … or exactly this status
//       {"expectText": "ok"},                // the page's visible text contains this
//       {"expectNoText": "Open ports"},      // … or does not
//       {"expectNone": "button"},            // no element matches this selector
//       {"fill": "#token", "value": "…"},    // types into the field (selectors are Playwright's: CSS,
//       {"check": "input[value=…]"},         //   text=…, role=button[name="…"]); ticks a box or radio,
//       {"uncheck": "…"},                    //   clears a box,
//       {"select": "#duration", "value": "PT1H"},  // chooses an option by value,
//       {"press": "#token", "key": "Enter"}, //   presses a key that navigates (keyboard use),
//       {"click": "text=Sign in"},           //   clicks it: it must navigate, and end 2xx,
//       {"click": "…", "status": 403},       //   or with exactly this status
//       {"download": "text=Download as CSV", "saveAs": "activity.csv"},  // clicks, saves to outDir
//       {"submitForm": "/ui/request", "fields": {"vm": "…"}, "status": 403},  // posts a form from the
//                                            //   page, as another site's page would try to
//       {"viewport": {"width": 420, "height": 800}},
//       {"screenshot": "healthz"},           // writes outDir/healthz.png (full page)
//       {"screenshot": "doc", "fullPage": false}  // … of the window only (for a page too long to capture whole)
//     ]
//   }
//
// The CA is trusted the way a Linux desktop trusts a private CA: it is imported into an NSS database
// ($HOME/.pki/nssdb, which Chromium on Linux reads) in a fresh temporary HOME, with `certutil` from
// libnss3-tools. Certificate checks stay on, so a certificate the CA did not issue, or one for another
// name, fails the `goto`.
//
// Requests to any origin other than baseUrl's are blocked and fail the scenario. Every wait is bounded
// (STEP_TIMEOUT_MS per step, SCENARIO_TIMEOUT_MS in all). Exit status: 0 when every step passed,
// 1 when a step failed (a `failure.png` of the page is written when possible), 2 for a bad scenario
// or a browser that would not start.

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.AJAR_CHROMIUM || '/usr/bin/chromium';
const STEP_TIMEOUT_MS = 15_000;
const SCENARIO_TIMEOUT_MS = 75_000;
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);
// Each step kind, and the type of its value: a string, except viewport's {width, height}.
const STEP_KINDS = [
  'goto', 'expectText', 'expectNoText', 'expectNone', 'fill', 'check', 'uncheck', 'select', 'press', 'click', 'download',
  'submitForm', 'viewport', 'screenshot',
];
// The other keys a step of each kind needs.
const STEP_NEEDS = { fill: ['value'], select: ['value'], press: ['key'], download: ['saveAs'], submitForm: ['fields', 'status'] };
const SAFE_NAME = /^[A-Za-z0-9._-]+$/;

class ScenarioError extends Error {}

function readScenario(arg) {
  if (arg === undefined) throw new ScenarioError('usage: node drive.mjs SCENARIO.json | \'{"baseUrl": …}\'');
  let text = arg;
  if (!arg.trimStart().startsWith('{')) {
    try {
      text = readFileSync(arg, 'utf8');
    } catch (e) {
      throw new ScenarioError(`cannot read scenario file ${arg}: ${e.message}`);
    }
  }
  let s;
  try {
    s = JSON.parse(text);
  } catch (e) {
    throw new ScenarioError(`scenario is not JSON: ${e.message}`);
  }
  for (const key of ['baseUrl', 'caFile', 'outDir']) {
    if (typeof s[key] !== 'string' || s[key] === '') throw new ScenarioError(`scenario needs "${key}" (a string)`);
  }
  let base;
  try {
    base = new URL(s.baseUrl);
  } catch {
    throw new ScenarioError(`baseUrl ${JSON.stringify(s.baseUrl)} is not a URL`);
  }
  if (base.protocol !== 'https:' || !LOOPBACK.has(base.hostname)) {
    throw new ScenarioError(`baseUrl must be https on a loopback address, not ${s.baseUrl}`);
  }
  if (!Array.isArray(s.steps) || s.steps.length === 0) throw new ScenarioError('scenario needs "steps" (a non-empty list)');
  s.steps.forEach((step, i) => {
    const kinds = Object.keys(step ?? {}).filter((k) => STEP_KINDS.includes(k));
    if (kinds.length !== 1) {
      throw new ScenarioError(`step ${i + 1} ${JSON.stringify(step)}: needs exactly one of ${STEP_KINDS.join(', ')}`);
    }
    const kind = kinds[0];
    if (kind === 'viewport') {
      const v = step.viewport;
      if (!Number.isInteger(v?.width) || !Number.isInteger(v?.height)) throw new ScenarioError(`step ${i + 1}: viewport takes {width, height}`);
    } else if (typeof step[kind] !== 'string') {
      throw new ScenarioError(`step ${i + 1}: "${kind}" takes a string`);
    }
    if ('fullPage' in step && (kind !== 'screenshot' || typeof step.fullPage !== 'boolean')) {
      throw new ScenarioError(`step ${i + 1}: "fullPage" is a boolean of a screenshot step`);
    }
    for (const need of STEP_NEEDS[kind] ?? []) {
      if (!(need in step)) throw new ScenarioError(`step ${i + 1}: "${kind}" needs "${need}"`);
    }
    for (const name of [kind === 'screenshot' ? step.screenshot : null, step.saveAs].filter((n) => n != null)) {
      if (!SAFE_NAME.test(name)) throw new ScenarioError(`step ${i + 1}: file name ${JSON.stringify(name)} must match [A-Za-z0-9._-]+`);
    }
  });
  return { ...s, origin: base.origin, caFile: resolve(s.caFile), outDir: resolve(s.outDir) };
}

function describe(step) {
  const kind = STEP_KINDS.find((k) => k in step);
  return `${kind} ${JSON.stringify(step[kind])}`;
}

/** A fresh HOME whose NSS database trusts the scenario's CA, and a fresh profile directory. */
function prepareHome(caFile) {
  const root = mkdtempSync(join(tmpdir(), 'ajar-browser-'));
  const nssdb = join(root, 'home', '.pki', 'nssdb');
  mkdirSync(nssdb, { recursive: true });
  const certutil = (args) => execFileSync('certutil', ['-d', `sql:${nssdb}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: STEP_TIMEOUT_MS });
  try {
    certutil(['-N', '--empty-password']);
    // C,, : a CA trusted to issue server certificates.
    certutil(['-A', '-t', 'C,,', '-n', 'ajar test CA', '-i', caFile]);
  } catch (e) {
    rmSync(root, { recursive: true, force: true });
    const detail = e.code === 'ENOENT' ? 'certutil not found (Debian package libnss3-tools)' : (e.stderr?.toString().trim() || e.message);
    throw new ScenarioError(`cannot trust the CA ${caFile}: ${detail}`);
  }
  return { root, home: join(root, 'home'), profile: join(root, 'profile') };
}

async function expectText(page, text) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  let seen = '';
  while (Date.now() < deadline) {
    try {
      seen = await page.locator('body').innerText({ timeout: 1_000 });
    } catch {
      // No body yet: try again until the deadline.
    }
    if (seen.includes(text)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  const shown = seen.length > 300 ? `${seen.slice(0, 300)}…` : seen;
  throw new Error(`text ${JSON.stringify(text)} not on the page within ${STEP_TIMEOUT_MS} ms; the page shows ${JSON.stringify(shown)}`);
}

function checkStatus(status, step) {
  const ok = 'status' in step ? status === step.status : status >= 200 && status < 300;
  if (!ok) throw new Error(`HTTP ${status}, expected ${'status' in step ? step.status : '2xx'}`);
}

/** Runs `act`, which must navigate the page (a link, a form's button, Enter in a form), and checks the
 * status of where it lands. */
async function navigating(page, step, act) {
  // The navigation's last response: redirects (3xx) lead on to it.
  const final = (r) => r.request().isNavigationRequest() && r.frame() === page.mainFrame() && (r.status() < 300 || r.status() >= 400);
  const [resp] = await Promise.all([page.waitForEvent('response', { predicate: final, timeout: STEP_TIMEOUT_MS }), act()]);
  await page.waitForLoadState('load', { timeout: STEP_TIMEOUT_MS });
  checkStatus(resp.status(), step);
  return `HTTP ${resp.status()}`;
}

async function runSteps(page, scenario, blocked) {
  for (const [i, step] of scenario.steps.entries()) {
    const label = `step ${i + 1} (${describe(step)})`;
    try {
      if ('goto' in step) {
        const url = new URL(step.goto, scenario.origin);
        if (url.origin !== scenario.origin) throw new Error(`${url} is not on ${scenario.origin}`);
        const resp = await page.goto(url.href, { waitUntil: 'load', timeout: STEP_TIMEOUT_MS });
        if (resp === null) throw new Error('no response');
        checkStatus(resp.status(), step);
        console.log(`ok   ${label}: HTTP ${resp.status()}`);
      } else if ('expectText' in step) {
        await expectText(page, step.expectText);
        console.log(`ok   ${label}`);
      } else if ('expectNoText' in step) {
        await page.waitForLoadState('load', { timeout: STEP_TIMEOUT_MS });
        // A page whose text cannot be read fails the step rather than passing as one without the text.
        const seen = await page.locator('body').innerText({ timeout: STEP_TIMEOUT_MS });
        if (seen.includes(step.expectNoText)) throw new Error(`the page shows ${JSON.stringify(step.expectNoText)}`);
        console.log(`ok   ${label}`);
      } else if ('expectNone' in step) {
        await page.waitForLoadState('load', { timeout: STEP_TIMEOUT_MS });
        const n = await page.locator(step.expectNone).count();
        if (n !== 0) throw new Error(`${n} element(s) match`);
        console.log(`ok   ${label}`);
      } else if ('fill' in step) {
        await page.locator(step.fill).fill(String(step.value));
        console.log(`ok   ${label}`);
      } else if ('check' in step || 'uncheck' in step) {
        if ('check' in step) await page.locator(step.check).check();
        else await page.locator(step.uncheck).uncheck();
        console.log(`ok   ${label}`);
      } else if ('select' in step) {
        await page.locator(step.select).selectOption(String(step.value));
        console.log(`ok   ${label}`);
      } else if ('press' in step) {
        const how = await navigating(page, step, () => page.locator(step.press).press(step.key));
        console.log(`ok   ${label}: ${how}`);
      } else if ('click' in step) {
        const how = await navigating(page, step, () => page.locator(step.click).click());
        console.log(`ok   ${label}: ${how}`);
      } else if ('download' in step) {
        const [download] = await Promise.all([page.waitForEvent('download', { timeout: STEP_TIMEOUT_MS }), page.locator(step.download).click()]);
        const failure = await download.failure();
        if (failure !== null) throw new Error(`download failed: ${failure}`);
        const path = join(scenario.outDir, step.saveAs);
        await download.saveAs(path);
        console.log(`ok   ${label}: ${path}`);
      } else if ('submitForm' in step) {
        const action = new URL(step.submitForm, scenario.origin);
        if (action.origin !== scenario.origin) throw new Error(`${action} is not on ${scenario.origin}`);
        const how = await navigating(page, step, () =>
          page.evaluate(({ action, fields }) => {
            const form = document.createElement('form');
            form.method = 'post';
            form.action = action;
            for (const [name, value] of Object.entries(fields)) {
              for (const v of Array.isArray(value) ? value : [value]) {
                const input = document.createElement('input');
                input.type = 'hidden';
                input.name = name;
                input.value = String(v);
                form.appendChild(input);
              }
            }
            document.body.appendChild(form);
            form.submit();
          }, { action: action.href, fields: step.fields }),
        );
        console.log(`ok   ${label}: ${how}`);
      } else if ('viewport' in step) {
        await page.setViewportSize(step.viewport);
        console.log(`ok   ${label}`);
      } else {
        const path = join(scenario.outDir, `${step.screenshot}.png`);
        await page.screenshot({ path, fullPage: step.fullPage ?? true, timeout: STEP_TIMEOUT_MS });
        console.log(`ok   ${label}: ${path}`);
      }
      if (blocked.length > 0) throw new Error(`the page requested other origins (blocked): ${blocked.join(', ')}`);
    } catch (e) {
      const first = String(e?.message ?? e).split('\n')[0];
      throw new Error(`${label} failed: ${first}`);
    }
  }
}

async function main() {
  const scenario = readScenario(process.argv[2]);
  mkdirSync(scenario.outDir, { recursive: true });
  const dirs = prepareHome(scenario.caFile);
  let context;
  try {
    try {
      context = await chromium.launchPersistentContext(dirs.profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: CHROMIUM_ARGS,
        env: { ...process.env, HOME: dirs.home },
        timeout: STEP_TIMEOUT_MS,
        viewport: { width: 1280, height: 800 },
      });
    } catch (e) {
      throw new ScenarioError(`cannot start ${CHROMIUM}: ${String(e?.message ?? e).split('\n')[0]}`);
    }
    context.setDefaultTimeout(STEP_TIMEOUT_MS);
    context.setDefaultNavigationTimeout(STEP_TIMEOUT_MS);
    const blocked = [];
    await context.route('**/*', (route) => {
      const url = route.request().url();
      let origin = null;
      try {
        origin = new URL(url).origin;
      } catch {
        // data:, about: and the like carry no origin and never reach the network.
      }
      if (origin === null || origin === 'null' || origin === scenario.origin) return route.continue();
      blocked.push(url);
      return route.abort('blockedbyclient');
    });
    const page = context.pages()[0] ?? (await context.newPage());
    try {
      await runSteps(page, scenario, blocked);
    } catch (e) {
      await page.screenshot({ path: join(scenario.outDir, 'failure.png'), fullPage: true, timeout: 5_000 }).catch(() => {});
      throw e;
    }
  } finally {
    await context?.close().catch(() => {});
    rmSync(dirs.root, { recursive: true, force: true });
  }
}

const watchdog = setTimeout(() => {
  console.error(`drive.mjs: scenario did not finish within ${SCENARIO_TIMEOUT_MS} ms`);
  process.exit(1);
}, SCENARIO_TIMEOUT_MS);

try {
  await main();
  console.log('drive.mjs: all steps passed');
  clearTimeout(watchdog);
} catch (e) {
  console.error(`drive.mjs: ${e.message}`);
  process.exitCode = e instanceof ScenarioError ? 2 : 1;
  clearTimeout(watchdog);
}
