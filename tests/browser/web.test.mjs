// The web client in real headless Chromium against a real natter server:
// each test tells one user story, with a phone page, a desktop page and an
// nc-style user on the TCP port in the same chat.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  DESKTOP, PHONE, ROOT, TcpUser, ids, launch, message, missing, online, openPage, pick, room, say,
  startServer, until,
} from './harness.mjs';

const why = missing();
if (why && process.env.CI === 'true') throw new Error(`browser tests cannot run under CI: ${why}`);

/** Every test ends within this, whatever hangs. */
const LIMIT = { timeout: 90000 };

describe('web client', { skip: why ?? false }, () => {
  let browser;
  before(async () => {
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
  });

  /** Runs `body(server)` with a fresh in-memory server, closing what it opened. */
  async function withServer(options, body) {
    const server = await startServer(options);
    const contexts = [];
    const track = async (page) => {
      contexts.push(page.context());
      return page;
    };
    try {
      await body(server, track);
    } finally {
      for (const c of contexts) await c.close().catch(() => {});
      await server.stop();
      server.clean();
    }
  }

  test('a phone page, a desktop page and an nc user chat in #lobby', LIMIT, () =>
    withServer({}, async (server, track) => {
      const alice = await track(await openPage(browser, server, 'alice', DESKTOP));
      const bob = await track(await openPage(browser, server, 'bob', PHONE));
      const carol = await TcpUser.connect(server.ports.tcp, 'carol');
      try {
        await say(alice, 'hello from a laptop');
        await message(bob, 'hello from a laptop').waitFor();
        await carol.expect(/^MSG \S+ \d+ #lobby alice hello from a laptop$/);

        carol.send('hi from nc');
        for (const page of [alice, bob]) {
          const line = message(page, 'hi from nc');
          await line.waitFor();
          assert.equal(await line.getAttribute('data-nick'), 'carol');
          assert.match(await line.getAttribute('data-id'), /^\d+$/);
        }

        await say(bob, 'and one from a phone');
        await message(alice, 'and one from a phone').waitFor();
        await carol.expect(/^MSG \S+ \d+ #lobby bob and one from a phone$/);

        // The desktop shows who is here; the phone keeps it in a drawer.
        await until('alice to list three users', async () =>
          (await alice.getByTestId('user').allTextContents()).join(' ') === 'alice bob carol');
        assert.equal(await bob.getByTestId('users').isVisible(), false);
        await bob.getByTestId('open-users').click();
        await bob.getByTestId('user').filter({ hasText: 'carol' }).waitFor();
        await bob.keyboard.press('Escape');

        // The layouts, for README.
        const shots = path.join(ROOT, 'docs/screenshots');
        mkdirSync(shots, { recursive: true });
        await alice.getByTestId('message-input').fill('');
        await alice.screenshot({ path: path.join(shots, 'web-desktop.png') });
        await bob.screenshot({ path: path.join(shots, 'web-phone.png') });

        // Touch targets are at least 44 px on the phone.
        const small = await bob.evaluate(() =>
          [...document.querySelectorAll('button, input')]
            .filter((el) => el.offsetParent !== null)
            .filter((el) => {
              const r = el.getBoundingClientRect();
              return r.height < 44 || r.width < 44;
            })
            .map((el) => el.id || el.dataset.testid || el.textContent));
        assert.deepEqual(small, []);
        assert.deepEqual([...alice.errors, ...bob.errors], []);
      } finally {
        carol.close();
      }
    }));

  test('a whisper has its own pane and a reply there goes back privately', LIMIT, () =>
    withServer({}, async (server, track) => {
      const alice = await track(await openPage(browser, server, 'alice', PHONE));
      const bob = await track(await openPage(browser, server, 'bob', DESKTOP));
      const carol = await TcpUser.connect(server.ports.tcp, 'carol');
      try {
        carol.send('WHISPER alice psst, alice');
        await until('a private pane for carol', async () =>
          (await room(alice, 'carol').getAttribute('data-unread')) === '1');
        await pick(alice, 'carol');
        await message(alice, 'psst, alice').waitFor();
        assert.equal(await room(alice, 'carol').getAttribute('data-unread'), '0');

        await say(alice, 'what is it?');
        await carol.expect(/^WHISPER \S+ \d+ alice carol what is it\?$/);
        await message(alice, 'what is it?').waitFor();

        // bob saw none of it.
        await say(bob, 'anyone?');
        await carol.expect(/^MSG \S+ \d+ #lobby bob anyone\?$/);
        assert.equal(await room(bob, 'carol').count(), 0);
        assert.equal(await message(bob, 'psst, alice').count(), 0);
      } finally {
        carol.close();
      }
    }));

  test('rooms: joining, switching, and unread counts with mentions', LIMIT, () =>
    withServer({}, async (server, track) => {
      const alice = await track(await openPage(browser, server, 'alice', DESKTOP));
      const carol = await TcpUser.connect(server.ports.tcp, 'carol');
      try {
        carol.send('JOIN #rust');
        await carol.expect(/^HIST END #rust /);
        carol.send('TOPIC #rust All things Rust');
        await carol.expect(/^TOPIC \S+ #rust carol All things Rust$/);

        await say(alice, '/join rust');
        await alice.locator('[data-testid="room"][data-name="#rust"][aria-current="true"]').waitFor();
        await alice.getByTestId('topic').filter({ hasText: 'All things Rust' }).waitFor();
        await until('carol in #rust', async () =>
          (await alice.getByTestId('user').allTextContents()).includes('carol'));

        await pick(alice, '#lobby');
        carol.send('MSG #rust first');
        carol.send('MSG #rust second');
        carol.send('MSG #rust alice: are you there?');
        await until('three unread in #rust', async () =>
          (await room(alice, '#rust').getAttribute('data-unread')) === '3');
        assert.equal(await room(alice, '#lobby').getAttribute('data-unread'), '0');
        assert.match(await alice.title(), /^\(3\) /);
        // The mention stands out.
        assert.equal(await room(alice, '#rust').locator('.badge.alert').count(), 1);

        await pick(alice, '#rust');
        assert.equal(await room(alice, '#rust').getAttribute('data-unread'), '0');
        await message(alice, 'alice: are you there?').waitFor();
        assert.equal(await message(alice, 'alice: are you there?').evaluate((li) => li.classList.contains('mention')), true);

        await say(alice, 'yes!');
        await carol.expect(/^MSG \S+ \d+ #rust alice yes!$/);
        await say(alice, '/part');
        await carol.expect(/^PART \S+ #rust alice/);
        await until('#rust to leave the list', async () => (await room(alice, '#rust').count()) === 0);
      } finally {
        carol.close();
      }
    }));

  test('a message with HTML in it is shown as text and runs nothing', LIMIT, () =>
    withServer({}, async (server, track) => {
      const alice = await track(await openPage(browser, server, 'alice', DESKTOP));
      const carol = await TcpUser.connect(server.ports.tcp, 'carol');
      try {
        const xss = '<img src=x onerror=alert(1)>';
        carol.send(xss);
        carol.send('see https://example.org/x?y=1 and javascript:alert(2)');
        const line = message(alice, xss);
        await line.waitFor();
        assert.equal(await line.getByTestId('message-text').textContent(), xss);
        assert.equal(await alice.getByTestId('messages').locator('img').count(), 0);
        const link = alice.getByTestId('messages').locator('a');
        await link.first().waitFor();
        assert.equal(await link.count(), 1);
        assert.equal(await link.getAttribute('href'), 'https://example.org/x?y=1');
        assert.equal(await link.getAttribute('rel'), 'noopener noreferrer');
        await alice.waitForTimeout(300);
        assert.equal(alice.dialogs, 0);
        assert.deepEqual(alice.errors, []);
      } finally {
        carol.close();
      }
    }));

  test('after a reload the room shows its history, each message once', LIMIT, () =>
    withServer({}, async (server, track) => {
      const alice = await track(await openPage(browser, server, 'alice', PHONE));
      const carol = await TcpUser.connect(server.ports.tcp, 'carol');
      try {
        for (let i = 1; i <= 5; i += 1) carol.send(`line ${i}`);
        await message(alice, 'line 5').waitFor();
        await say(alice, 'my own line');
        await carol.expect(/^MSG \S+ \d+ #lobby alice my own line$/);
        const before = await ids(alice);
        assert.equal(before.length, 5);

        await alice.reload();
        // The nickname is remembered.
        assert.equal(await alice.getByTestId('nick-input').inputValue(), 'alice');
        await alice.getByTestId('nick-input').press('Enter');
        await online(alice);
        await message(alice, 'line 1').waitFor();
        await message(alice, 'my own line').waitFor();
        const after = await ids(alice);
        assert.equal(after.length, 6);
        assert.deepEqual(after, [...after].sort((a, b) => a - b));
        assert.equal(new Set(after).size, after.length);
        for (const id of before) assert.ok(after.includes(id));
      } finally {
        carol.close();
      }
    }));

  test('a registered nickname asks for its password, and logging in takes it over', LIMIT, () =>
    withServer({}, async (server, track) => {
      const first = await openPage(browser, server, 'alice', DESKTOP);
      await first.getByTestId('register-password').fill('correct-horse');
      await first.getByTestId('register-password').press('Enter');
      await first.getByTestId('status').filter({ hasText: 'online as alice (user)' }).waitFor();
      await first.context().close();

      // Someone on a phone asks for the nickname: it is registered.
      const phone = await track(await browser.newContext({ ...PHONE, serviceWorkers: 'block' }).then((c) => c.newPage()));
      await phone.goto(server.url);
      await phone.getByTestId('nick-input').fill('alice');
      await phone.getByTestId('nick-input').press('Enter');
      const password = phone.getByTestId('password-input');
      await password.waitFor();
      await password.fill('wrong-password');
      await password.press('Enter');
      await phone.locator('#login-message').filter({ hasText: 'Wrong password' }).waitFor();
      await password.fill('correct-horse');
      await password.press('Enter');
      await online(phone);
      assert.match(await phone.getByTestId('status').textContent(), /online as alice \(user\)/);

      // Logging in from a laptop while the phone holds it: the phone is told and does not take it back.
      const laptop = await track(await browser.newContext({ ...DESKTOP, serviceWorkers: 'block' }).then((c) => c.newPage()));
      await laptop.goto(server.url);
      await laptop.getByTestId('nick-input').fill('alice');
      await laptop.locator('#login-toggle').click();
      await laptop.getByTestId('password-input').fill('correct-horse');
      await laptop.getByTestId('password-input').press('Enter');
      await online(laptop);
      await phone.getByTestId('nick-input').waitFor();
      await phone.locator('#login-message').filter({ hasText: 'another connection' }).waitFor();
      await laptop.waitForTimeout(1500);
      assert.match(await laptop.getByTestId('status').textContent(), /online as alice/);
    }));

  test('scrolling to the top fetches older pages of history', LIMIT, () =>
    withServer({}, async (server, track) => {
      const carol = await TcpUser.connect(server.ports.tcp, 'carol');
      try {
        for (let i = 1; i <= 120; i += 1) carol.send(`old ${i}`);
        carol.send('PING sent');
        await carol.expect(/^PONG sent$/);
        const alice = await track(await openPage(browser, server, 'alice', PHONE));
        await message(alice, 'old 120').waitFor();
        assert.equal((await ids(alice)).length, 50);
        for (const want of [100, 120]) {
          await until(`${want} messages after scrolling up`, async () => {
            await alice.getByTestId('messages').evaluate((ol) => {
              ol.scrollTop = 0;
              ol.dispatchEvent(new Event('scroll'));
            });
            return (await ids(alice)).length >= want;
          });
        }
        const shown = await ids(alice);
        assert.equal(shown.length, 120);
        assert.deepEqual(shown, [...shown].sort((a, b) => a - b));
        await message(alice, 'old 1').waitFor({ state: 'attached' });
      } finally {
        carol.close();
      }
    }));

  test('the installed page opens without the server and says it is offline', LIMIT, async () => {
    const server = await startServer({});
    const context = await browser.newContext({ ...PHONE });
    try {
      const page = await context.newPage();
      await page.goto(server.url);
      await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
      await page.reload();
      await until('the service worker to control the page', () =>
        page.evaluate(() => navigator.serviceWorker.controller !== null));
      const manifest = await page.evaluate(async () => (await fetch('/manifest.webmanifest')).json());
      assert.equal(manifest.display, 'standalone');
      assert.deepEqual(manifest.icons.filter((i) => i.type === 'image/png').map((i) => i.sizes), ['192x192', '512x512']);
      await server.stop();
      await page.reload();
      await page.getByTestId('nick-input').waitFor();
      await until('the page to say it is offline', async () => {
        const text = await page.locator('#login-status').textContent();
        return /Not connected/.test(text);
      }, 15000);
      assert.doesNotMatch(await page.getByTestId('status').textContent(), /online/);
    } finally {
      await context.close();
      await server.stop();
      server.clean();
    }
  });

  test('a restarted server: every page reconnects and fills the gap, nothing twice', LIMIT, async () => {
    const first = await startServer({ history: 'sqlite' });
    let server = first;
    const pages = [];
    let carol = null;
    try {
      const alice = await openPage(browser, server, 'alice', DESKTOP);
      const bob = await openPage(browser, server, 'bob', PHONE);
      pages.push(alice, bob);
      await say(alice, '/join rust');
      await alice.locator('[data-testid="room"][data-name="#rust"][aria-current="true"]').waitFor();
      await say(alice, 'before in rust');
      await pick(alice, '#lobby');
      carol = await TcpUser.connect(server.ports.tcp, 'carol');
      carol.send('before in lobby');
      await message(alice, 'before in lobby').waitFor();
      await message(bob, 'before in lobby').waitFor();
      carol.close();

      await server.stop();
      for (const page of pages) {
        await page.getByTestId('status').filter({ hasNotText: 'online' }).waitFor();
      }
      // A moment of being offline; the page keeps what is typed.
      await bob.getByTestId('message-input').fill('typed while offline');
      await bob.getByTestId('message-input').press('Enter');
      assert.equal(await bob.getByTestId('message-input').inputValue(), 'typed while offline');

      server = await startServer({ history: 'sqlite', dataDir: first.dir, ports: first.ports });
      carol = await TcpUser.connect(server.ports.tcp, 'carol');
      carol.send('JOIN #rust');
      await carol.expect(/^HIST END #rust /);
      for (let i = 1; i <= 3; i += 1) {
        carol.send(`MSG #lobby missed ${i}`);
        carol.send(`MSG #rust missed ${i}`);
      }
      carol.send('PING done');
      await carol.expect(/^PONG done$/);

      // Waking up (the browser's online event) skips the back-off wait.
      for (const page of pages) await page.evaluate(() => window.dispatchEvent(new Event('online')));
      for (const page of pages) await online(page, 30000);
      for (const page of pages) {
        for (let i = 1; i <= 3; i += 1) await message(page, `missed ${i}`).waitFor();
        const shown = await ids(page);
        assert.equal(new Set(shown).size, shown.length, `no duplicate ids: ${shown}`);
        assert.deepEqual(shown, [...shown].sort((a, b) => a - b));
        assert.equal(await message(page, 'before in lobby').count(), 1);
      }
      await pick(alice, '#rust');
      for (let i = 1; i <= 3; i += 1) await message(alice, `missed ${i}`).waitFor();
      assert.equal(await message(alice, 'before in rust').count(), 1);
      const rust = await ids(alice);
      assert.equal(new Set(rust).size, rust.length, `no duplicate ids: ${rust}`);
      assert.deepEqual(rust, [...rust].sort((a, b) => a - b));

      // What was kept goes out once the page is back.
      await bob.getByTestId('message-input').press('Enter');
      await carol.expect(/^MSG \S+ \d+ #lobby bob typed while offline$/);
    } finally {
      carol?.close();
      for (const page of pages) await page.context().close().catch(() => {});
      await server.stop();
      first.clean();
    }
  });
});
