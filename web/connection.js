// The WebSocket to the server: one line per text frame, reconnection with
// back-off (at once when the browser comes back online or the page becomes
// visible), and a keepalive that notices a connection that died silently
// (a phone asleep, a NAT that forgot us).

import { KEEPALIVE_TOKEN } from './protocol.js';

/** The first wait after a failure; it doubles up to `MAX_DELAY`. */
const FIRST_DELAY = 500;
const MAX_DELAY = 15000;
/** After this long without a line, send a PING; after twice this, give up. */
const KEEPALIVE = 30000;

/** The WebSocket address of the page's own server. */
export function socketUrl(loc = location) {
  return (loc.protocol === 'https:' ? 'wss://' : 'ws://') + loc.host + '/ws';
}

export class Connection {
  /**
   * `onLine(text)` gets each line; `onState(state, detail)` gets
   * 'connecting', 'open', 'offline' (detail: why and when it retries).
   */
  constructor(url, { onLine, onState }) {
    this.url = url;
    this.onLine = onLine;
    this.onState = onState;
    this.ws = null;
    this.failures = 0;
    this.timer = null;
    this.keepalive = null;
    this.lastHeard = 0;
    this.stopped = false;
    const now = () => this.retryNow();
    window.addEventListener('online', now);
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') now();
    });
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.stopped || this.ws) return;
    this.onState('connecting', `attempt ${this.failures + 1}`);
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.lost(String(err));
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.lastHeard = Date.now();
      this.startKeepalive();
      this.onState('open', '');
    };
    ws.onmessage = (ev) => {
      this.lastHeard = Date.now();
      if (typeof ev.data !== 'string') return;
      for (const line of ev.data.split(/\r?\n/)) if (line !== '') this.onLine(line);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      if (opened) this.failures = 0;
      const why = ev.reason || (opened ? 'the connection closed' : 'cannot reach the server');
      this.lost(why);
    };
    ws.onerror = () => {};
  }

  lost(why) {
    this.stopKeepalive();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = null;
      try {
        ws.close();
      } catch {
        // Already closed.
      }
    }
    if (this.stopped) {
      this.onState('closed', why);
      return;
    }
    this.failures += 1;
    const base = Math.min(MAX_DELAY, FIRST_DELAY * 2 ** Math.min(this.failures - 1, 10));
    const delay = base + Math.floor(Math.random() * (base / 4));
    this.onState('offline', `${why}; retrying in ${(delay / 1000).toFixed(1)} s`);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** Skips the back-off wait, if one is running. */
  retryNow() {
    if (this.timer !== null && !this.stopped) this.connect();
  }

  /** Sends a line; false if there is no connection (the caller keeps it). */
  send(line) {
    if (!this.open) return false;
    this.ws.send(line);
    return true;
  }

  /** Ends the connection for good. */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.lost('you quit');
  }

  /** Connects again after `stop()`, when the user asks to. */
  restart() {
    if (!this.stopped) return;
    this.stopped = false;
    this.failures = 0;
    this.connect();
  }

  startKeepalive() {
    this.stopKeepalive();
    this.keepalive = setInterval(() => {
      const quiet = Date.now() - this.lastHeard;
      if (quiet > 2 * KEEPALIVE) this.lost('the server stopped answering');
      else if (quiet > KEEPALIVE) this.send(`PING ${KEEPALIVE_TOKEN}`);
    }, KEEPALIVE / 3);
  }

  stopKeepalive() {
    clearInterval(this.keepalive);
    this.keepalive = null;
  }
}
