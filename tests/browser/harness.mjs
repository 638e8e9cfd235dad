// What the browser tests share: a natter server on loopback ports, headless
// Chromium through playwright-core, pages signed in as a user, and an
// nc-style user on the plain TCP port. Everything waits with a deadline.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const NATTER = process.env.NATTER_BIN ?? path.join(ROOT, 'target/debug/natter');

/** Why the browser tests cannot run here, or null if they can. */
export function missing() {
  if (!existsSync(CHROMIUM)) return `no Chromium at ${CHROMIUM}`;
  if (!existsSync(NATTER)) return `no natter binary at ${NATTER} (run cargo build first)`;
  return null;
}

/** A phone: what the layout at 640 px and narrower is for. */
export const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };
export const DESKTOP = { viewport: { width: 1280, height: 800 } };

const ANSI = /\u001b\[[0-9;]*m/g;

/** Resolves when `check()` is truthy, rejects after `ms` with `what`. */
export async function until(what, check, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Starts `natter serve` on loopback. `ports` pins the ports (to restart a
 * server where its clients expect it); `history` is memory or sqlite.
 */
export async function startServer({ history = 'memory', dataDir = null, ports = null } = {}) {
  const dir = dataDir ?? mkdtempSync(path.join(os.tmpdir(), 'natter-web-'));
  const args = [
    'serve',
    '--bind', `127.0.0.1:${ports ? ports.tcp : 0}`,
    '--web-bind', `127.0.0.1:${ports ? ports.web : 0}`,
    '--history', history,
    '--accounts', 'memory',
    '--data-dir', dir,
    '--rate', '0',
  ];
  const proc = spawn(NATTER, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (d) => {
    log += d.toString('utf8').replace(ANSI, '');
  });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  let gone = null;
  exited.then((e) => {
    gone = e;
  });
  const found = await until('the server to print its addresses', () => {
    if (gone) throw new Error(`natter exited (${JSON.stringify(gone)}):\n${log}`);
    const web = log.match(/web client.*?url="?(http:\/\/[^\s"]+)/);
    const tcp = log.match(/listening.*?address="?127\.0\.0\.1:(\d+)/);
    return web && tcp ? { url: web[1], tcp: Number(tcp[1]) } : null;
  }, 15000);
  const webPort = Number(new URL(found.url).port);
  return {
    url: found.url,
    dir,
    ports: { tcp: found.tcp, web: webPort },
    log: () => log,
    /** Stops it with SIGTERM (as a person would), SIGKILL if it lingers. */
    async stop() {
      if (gone) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 8000);
      await exited;
      clearTimeout(t);
    },
    /** Removes the data directory (only one this harness made). */
    clean() {
      if (!dataDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Headless Chromium, as Debian ships it. */
export async function launch() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    timeout: 30000,
  });
}

/**
 * A page of its own (own storage) at the server, signed in as `nick`.
 * `page.dialogs` counts alert/confirm/prompt dialogs (there must be none).
 */
export async function openPage(browser, server, nick, device = DESKTOP) {
  const context = await browser.newContext({ ...device, serviceWorkers: 'block' });
  context.setDefaultTimeout(10000);
  const page = await context.newPage();
  page.dialogs = 0;
  page.errors = [];
  page.on('dialog', (d) => {
    page.dialogs += 1;
    d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => page.errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content.Security.Policy/i.test(m.text())) page.errors.push(m.text());
  });
  await page.goto(server.url);
  await signIn(page, nick);
  return page;
}

/** Types `nick` on the nickname screen and waits to be online. */
export async function signIn(page, nick) {
  const input = page.getByTestId('nick-input');
  await input.fill(nick);
  await input.press('Enter');
  await online(page);
}

/** Waits until the page says it is online. */
export async function online(page, ms = 10000) {
  await page.getByTestId('status').filter({ hasText: 'online' }).waitFor({ timeout: ms });
}

/** Types a line in the message field and presses Enter. */
export async function say(page, text) {
  const input = page.getByTestId('message-input');
  await input.fill(text);
  await input.press('Enter');
}

/** The message line with `text` in the shown pane. */
export function message(page, text) {
  return page.getByTestId('messages').getByTestId('message').filter({
    has: page.getByTestId('message-text').getByText(text, { exact: true }),
  });
}

/** The entry of `name` (`#room` or a nick) in the room list. */
export function room(page, name) {
  return page.locator(`[data-testid="rooms"] [data-testid="room"][data-name="${name}"]`);
}

/** Shows the pane `name`, opening the drawer first on a phone. */
export async function pick(page, name) {
  const drawer = page.getByTestId('open-rooms');
  if (await drawer.isVisible()) await drawer.click();
  await room(page, name).click();
  await page.locator(`[data-testid="room"][data-name="${name}"][aria-current="true"]`).waitFor({ state: "attached" });
}

/** The ids of the shown pane's messages, in page order (own unconfirmed echoes left out). */
export async function ids(page) {
  return page.getByTestId('messages').evaluate((ol) =>
    [...ol.querySelectorAll('[data-testid="message"]')].map((li) => li.dataset.id).filter((id) => id).map(Number),
  );
}

/** An nc-style user on the plain TCP port: raw lines, CRLF as nc would send with -C. */
export class TcpUser {
  static async connect(port, nick) {
    const user = new TcpUser();
    await new Promise((resolve, reject) => {
      user.socket = net.connect({ host: '127.0.0.1', port }, resolve);
      user.socket.once('error', reject);
    });
    user.socket.setEncoding('utf8');
    user.socket.on('data', (d) => {
      user.buffer += d;
      let i;
      while ((i = user.buffer.indexOf('\n')) >= 0) {
        user.lines.push(user.buffer.slice(0, i).replace(/\r$/, ''));
        user.buffer = user.buffer.slice(i + 1);
      }
    });
    user.socket.on('error', () => {});
    await user.expect(/^HELLO /);
    user.send(`NICK ${nick}`);
    await user.expect(new RegExp(`^WELCOME ${nick} `));
    await user.expect(/^HIST END #lobby /);
    return user;
  }

  constructor() {
    this.lines = [];
    this.buffer = '';
    this.seen = 0;
  }

  send(line) {
    this.socket.write(`${line}\r\n`);
  }

  /** The next line (after the last one expected) matching `re`. */
  async expect(re, ms = 10000) {
    return until(`a line matching ${re} (got: ${this.lines.slice(-5).join(' | ')})`, () => {
      for (let i = this.seen; i < this.lines.length; i += 1) {
        if (re.test(this.lines[i])) {
          this.seen = i + 1;
          return this.lines[i];
        }
      }
      return null;
    }, ms);
  }

  close() {
    this.socket.destroy();
  }
}
