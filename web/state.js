// The client's state: panes (one per room or private conversation), who is
// in them, unread counts, the nickname and the connection's state. It is
// fed parsed server lines and what the user does, and answers with the
// lines to send; the views only read it. No DOM and no socket here.

import { LOBBY, HISTORY_MAX, KEEPALIVE_TOKEN, fold, isRoom, mentions, suggestion } from './protocol.js';

/** Lines kept per pane; older ones are dropped (the server keeps history). */
export const SCROLLBACK = 2000;

/** The most private panes; the server bounds rooms itself. */
const MAX_PRIVATE = 16;

const CURRENT_ROOM_INFO = 'Messages without a room now go to ';

/** One conversation. */
export class Pane {
  constructor(kind, name) {
    /** 'room' or 'private'. */
    this.kind = kind;
    /** `#room` or the partner's nick, as the server shows it. */
    this.name = name;
    /** Lines in id order; lines without an id (system lines, echoes) where they happened. */
    this.lines = [];
    /** Ids shown, so a line replayed twice shows once. */
    this.ids = new Set();
    this.newestId = 0;
    this.oldestId = 0;
    this.unread = 0;
    /** A mention or a whisper is among the unread lines. */
    this.alert = false;
    this.topic = '';
    this.users = [];
    /** The server has us in this room (rooms only). */
    this.joined = false;
    /** A `HISTORY before` is on its way. */
    this.fetching = false;
    /** The server has nothing older. */
    this.exhausted = false;
    /** Bumped on every change, so a view redraws only what changed. */
    this.version = 0;
  }

  get key() {
    return fold(this.name);
  }
}

let nextSeq = 1;

/** The first few of `nicks` and how many more: a big room's news stays one short line. */
function someOf(nicks) {
  const shown = nicks.slice(0, 5).join(', ');
  return nicks.length > 5 ? `${shown} and ${nicks.length - 5} more` : shown;
}

/** The state; `changed()` listeners run after each batch of changes. */
export class State {
  constructor() {
    /** @type {Pane[]} rooms first, then private panes. */
    this.panes = [new Pane('room', LOBBY)];
    this.shownKey = fold(LOBBY);
    /** The nickname the server gave us (null until WELCOME). */
    this.nick = null;
    /** The nickname to register with. */
    this.wanted = '';
    /** 'connecting' | 'registering' | 'online' | 'offline' | 'closed'. */
    this.conn = 'connecting';
    this.connDetail = '';
    /** What the nickname screen should say, when it is shown. */
    this.prompt = { shown: true, message: '', suggestion: '', password: false };
    this.account = null;
    this.historyOff = false;
    this.welcomedBefore = false;
    /** The folded room of the USERS line just applied: JOINS lines right after it are the rest of its list. */
    this.listing = null;
    /** The room whose pane to show once the server confirms the JOIN. */
    this.switchTo = null;
    /** Lines the app should notify about: {pane, nick, text}. */
    this.alerts = [];
    this.listeners = [];
    /** The page is hidden: lines in the shown pane count as unread too. */
    this.away = false;
  }

  onChange(fn) {
    this.listeners.push(fn);
  }

  changed() {
    for (const fn of this.listeners) fn(this);
  }

  get shown() {
    return this.pane(this.shownKey) ?? this.panes[0];
  }

  pane(key) {
    return this.panes.find((p) => p.key === fold(key));
  }

  isMe(nick) {
    return this.nick !== null && fold(nick) === fold(this.nick);
  }

  /** The pane of a room or private conversation, opened if needed. */
  open(kind, name) {
    let pane = this.pane(name);
    if (pane) return pane;
    pane = new Pane(kind, name);
    if (kind === 'private' && this.nick) pane.users = [this.nick, name].sort((a, b) => fold(a).localeCompare(fold(b)));
    if (kind === 'room') {
      const firstPrivate = this.panes.findIndex((p) => p.kind === 'private');
      this.panes.splice(firstPrivate < 0 ? this.panes.length : firstPrivate, 0, pane);
    } else {
      const privates = this.panes.filter((p) => p.kind === 'private');
      if (privates.length >= MAX_PRIVATE) {
        const quiet = privates.find((p) => p.unread === 0 && p.key !== this.shownKey) ?? privates[0];
        this.close(quiet);
      }
      this.panes.push(pane);
    }
    return pane;
  }

  close(pane) {
    if (this.panes.length <= 1) return;
    const at = this.panes.indexOf(pane);
    if (at < 0) return;
    this.panes.splice(at, 1);
    if (pane.key === this.shownKey) this.show(this.panes[Math.max(0, at - 1)].key);
  }

  /** Shows a pane and marks it read. */
  show(key) {
    const pane = this.pane(key);
    if (!pane) return;
    this.shownKey = pane.key;
    pane.unread = 0;
    pane.alert = false;
    pane.version += 1;
  }

  /** Total unread lines, for the tab title. */
  get unread() {
    return this.panes.reduce((n, p) => n + p.unread, 0);
  }

  /** Adds a line without an id (news, errors) at the bottom of a pane. */
  system(pane, text, kind = 'info', time = Date.now()) {
    this.push(pane, { seq: nextSeq++, id: null, time, kind, text });
  }

  push(pane, entry) {
    pane.lines.push(entry);
    this.trim(pane);
    pane.version += 1;
  }

  trim(pane) {
    if (pane.lines.length <= SCROLLBACK) return;
    const dropped = pane.lines.splice(0, pane.lines.length - SCROLLBACK);
    for (const e of dropped) if (e.id !== null) pane.ids.delete(e.id);
    const first = pane.lines.find((e) => e.id !== null);
    pane.oldestId = first ? first.id : 0;
    pane.exhausted = false;
  }

  /** A chat line echoed at once, as the server never sends us our own. */
  echo(pane, text) {
    this.push(pane, { seq: nextSeq++, id: null, time: Date.now(), kind: 'chat', nick: this.nick ?? this.wanted, text, own: true, echo: true });
  }

  /**
   * A message with an id, live or replayed, in its pane: once, in id
   * order. Our own echo of it gets the id instead of a second line.
   * Returns lines to send (none today; kept for symmetry).
   */
  message(m, replayed) {
    let pane;
    let nick;
    let kind;
    if (m.type === 'msg') {
      pane = this.pane(m.room);
      if (!pane) {
        if (replayed) return;
        pane = this.shown;
      }
      nick = m.nick;
      kind = 'chat';
    } else {
      const own = this.isMe(m.from);
      pane = this.open('private', own ? m.to : m.from);
      nick = m.from;
      kind = 'whisper';
    }
    // A duplicate is the same id with the same words: a different message under
    // a known id (a server that lost its id floor) is shown, never dropped.
    if (pane.ids.has(m.id) && pane.lines.some((e) => e.id === m.id && e.nick === nick && e.text === m.text)) return;
    if (m.id < pane.oldestId && pane.lines.length >= SCROLLBACK) return;
    const own = this.isMe(nick);
    if (own) {
      const echo = pane.lines.find((e) => e.echo && e.id === null && e.text === m.text);
      if (echo) {
        echo.id = m.id;
        echo.time = m.time;
        echo.echo = false;
        pane.ids.add(m.id);
        this.place(pane, echo);
        pane.newestId = Math.max(pane.newestId, m.id);
        pane.oldestId = pane.oldestId === 0 ? m.id : Math.min(pane.oldestId, m.id);
        pane.version += 1;
        return;
      }
    }
    const mention = !own && kind === 'chat' && mentions(m.text, this.nick);
    const entry = { seq: nextSeq++, id: m.id, time: m.time, kind, nick, text: m.text, own, mention };
    const newer = m.id > pane.newestId;
    // A first replay is the room's past, not news; later ones are what we missed.
    const news = newer && (!replayed || pane.newestId > 0);
    pane.ids.add(m.id);
    if (newer) {
      pane.lines.push(entry);
    } else {
      const at = pane.lines.findIndex((e) => e.id !== null && e.id > m.id);
      pane.lines.splice(at < 0 ? pane.lines.length : at, 0, entry);
    }
    pane.newestId = Math.max(pane.newestId, m.id);
    pane.oldestId = pane.oldestId === 0 ? m.id : Math.min(pane.oldestId, m.id);
    this.trim(pane);
    pane.version += 1;
    const alert = mention || (kind === 'whisper' && !own);
    if (news && !own && (pane.key !== this.shownKey || this.away)) {
      pane.unread += 1;
      pane.alert ||= alert;
    }
    if (newer && !own && !replayed && (alert || pane.key !== this.shownKey || this.away)) {
      this.alerts.push({ pane: pane.name, nick, text: m.text, alert });
    }
  }

  /** Moves a line that just got its id to its place in id order, if it is out of it. */
  place(pane, entry) {
    const at = pane.lines.indexOf(entry);
    const before = pane.lines.slice(0, at).reverse().find((e) => e.id !== null);
    const after = pane.lines.slice(at + 1).find((e) => e.id !== null);
    if ((!before || before.id < entry.id) && (!after || after.id > entry.id)) return;
    pane.lines.splice(at, 1);
    const to = pane.lines.findIndex((e) => e.id !== null && e.id > entry.id);
    pane.lines.splice(to < 0 ? pane.lines.length : to, 0, entry);
  }

  /** The connection changed state; `detail` says why, in words. */
  setConn(conn, detail = '') {
    const was = this.conn;
    this.conn = conn;
    this.connDetail = detail;
    if (conn === 'offline' || conn === 'closed' || conn === 'connecting') {
      if (was === 'online' || was === 'registering') {
        for (const pane of this.panes) {
          if (pane.kind === 'room') {
            pane.joined = false;
            pane.users = [];
          }
          pane.fetching = false;
          if (was === 'online') this.system(pane, `Disconnected${detail ? `: ${detail}` : ''}.`, 'error');
        }
      }
      if (this.nick) this.wanted = this.nick;
      this.nick = null;
    }
  }

  /**
   * Applies one server line; returns the lines to send because of it
   * (history requests after a reconnection).
   */
  apply(m) {
    const out = [];
    const shown = this.shown;
    const listing = this.listing;
    this.listing = null;
    switch (m.type) {
      case 'hello':
        break;
      case 'welcome': {
        this.nick = m.nick;
        this.wanted = m.nick;
        this.conn = 'online';
        this.connDetail = '';
        this.prompt = { shown: false, message: '', suggestion: '', password: false };
        this.system(this.shown, m.text);
        const reconnected = this.welcomedBefore;
        this.welcomedBefore = true;
        for (const pane of this.panes) {
          if (pane.kind !== 'private') continue;
          pane.users = [this.nick, pane.name].sort((a, b) => fold(a).localeCompare(fold(b)));
          if (reconnected && pane.newestId > 0 && !this.historyOff) {
            out.push(`HISTORY ${pane.name} since ${pane.newestId}`);
          }
        }
        break;
      }
      case 'msg':
      case 'whisper':
        this.message(m, false);
        break;
      case 'hist':
        this.message(m.line, true);
        break;
      case 'histEnd': {
        const pane = this.pane(m.target);
        if (!pane) break;
        if (pane.fetching && m.count === 0) pane.exhausted = true;
        pane.fetching = false;
        if (m.count >= HISTORY_MAX && !this.historyOff) out.push(`HISTORY ${pane.name} since ${pane.newestId}`);
        pane.version += 1;
        break;
      }
      case 'join': {
        if (!this.isMe(m.nick)) {
          const pane = this.pane(m.room);
          if (!pane) break;
          if (!pane.users.some((u) => fold(u) === fold(m.nick))) {
            pane.users.push(m.nick);
            pane.users.sort((a, b) => fold(a).localeCompare(fold(b)));
          }
          this.system(pane, `${m.nick} joined ${m.room}`, 'join', m.time);
          break;
        }
        const pane = this.open('room', m.room);
        pane.name = m.room;
        pane.joined = true;
        pane.topic = '';
        if (pane.newestId > 0 && !this.historyOff) out.push(`HISTORY ${pane.name} since ${pane.newestId}`);
        if (this.switchTo === pane.key) {
          this.switchTo = null;
          this.show(pane.key);
        }
        this.system(pane, `You joined ${m.room}`, 'join', m.time);
        break;
      }
      case 'part': {
        const pane = this.pane(m.room);
        const why = m.text ? ` (${m.text})` : '';
        if (!this.isMe(m.nick)) {
          if (!pane) break;
          pane.users = pane.users.filter((u) => fold(u) !== fold(m.nick));
          this.system(pane, `${m.nick} left ${m.room}${why}`, 'leave', m.time);
          break;
        }
        if (pane && this.panes.length > 1) {
          this.close(pane);
        } else if (pane) {
          pane.joined = false;
          pane.users = [];
        }
        this.system(this.shown, `You left ${m.room}${why}`, 'leave', m.time);
        break;
      }
      case 'quit': {
        const why = m.text ? ` (${m.text})` : '';
        for (const pane of this.panes) {
          const here =
            pane.kind === 'room'
              ? pane.users.some((u) => fold(u) === fold(m.nick))
              : fold(pane.name) === fold(m.nick);
          if (!here) continue;
          pane.users = pane.kind === 'room' ? pane.users.filter((u) => fold(u) !== fold(m.nick)) : pane.users;
          this.system(pane, `${m.nick} left${why}`, 'leave', m.time);
        }
        break;
      }
      case 'nick': {
        const me = this.isMe(m.old);
        if (me) {
          this.nick = m.nick;
          this.wanted = m.nick;
        }
        for (const pane of this.panes) {
          const i = pane.users.findIndex((u) => fold(u) === fold(m.old));
          const partner = pane.kind === 'private' && fold(pane.name) === fold(m.old);
          if (i < 0 && !partner && !me) continue;
          if (i >= 0) pane.users[i] = m.nick;
          pane.users.sort((a, b) => fold(a).localeCompare(fold(b)));
          if (partner) {
            const wasShown = this.shownKey === pane.key;
            pane.name = m.nick;
            if (wasShown) this.shownKey = pane.key;
          }
          this.system(pane, me ? `You are now ${m.nick}` : `${m.old} is now ${m.nick}`, 'info', m.time);
        }
        break;
      }
      case 'joins': {
        const pane = this.pane(m.room);
        if (!pane) break;
        const known = new Set(pane.users.map(fold));
        const added = m.nicks.filter((n) => !known.has(fold(n)) && known.add(fold(n)));
        pane.users.push(...added);
        pane.users.sort((a, b) => fold(a).localeCompare(fold(b)));
        pane.version += 1;
        if (listing === fold(m.room)) {
          // The rest of a member list: say nothing, more may follow.
          this.listing = listing;
          break;
        }
        const others = added.filter((n) => !this.isMe(n));
        if (others.length) this.system(pane, `${someOf(others)} joined ${m.room}`, 'join');
        break;
      }
      case 'parts': {
        const pane = this.pane(m.room);
        if (!pane) break;
        const gone = new Set(m.nicks.filter((n) => !this.isMe(n)).map(fold));
        const left = pane.users.filter((u) => gone.has(fold(u)));
        pane.users = pane.users.filter((u) => !gone.has(fold(u)));
        pane.version += 1;
        // Someone whose QUIT came already is not said to leave again.
        if (left.length) this.system(pane, `${someOf(left)} left ${m.room}`, 'leave');
        break;
      }
      case 'users': {
        this.listing = fold(m.room);
        const pane = this.pane(m.room);
        const nicks = [...new Set(m.nicks)].sort((a, b) => fold(a).localeCompare(fold(b)));
        if (!pane) {
          this.system(shown, `${m.room} (${nicks.length}): ${nicks.join(' ')}`);
          break;
        }
        pane.users = nicks;
        pane.version += 1;
        break;
      }
      case 'topic': {
        const pane = this.pane(m.room);
        const line = m.text ? `Topic of ${m.room}: ${m.text} (set by ${m.nick})` : `${m.room} has no topic (cleared by ${m.nick})`;
        if (!pane) {
          this.system(shown, line, 'info', m.time);
          break;
        }
        pane.topic = m.text;
        this.system(pane, line, 'info', m.time);
        break;
      }
      case 'info':
        if (!m.text.startsWith(CURRENT_ROOM_INFO)) this.system(shown, m.text);
        break;
      case 'err': {
        if (m.code === 'history-off') this.historyOff = true;
        for (const pane of this.panes) pane.fetching = false;
        this.switchTo = null;
        this.system(shown, m.text, 'error');
        const registering = this.nick === null;
        if (registering && ['nick-taken', 'nick-invalid', 'nick-registered'].includes(m.code)) {
          this.prompt = {
            shown: true,
            message: m.text,
            suggestion: m.code === 'nick-registered' ? this.wanted : suggestion(m.text),
            password: m.code === 'nick-registered',
            guest: m.code === 'nick-registered' ? suggestion(m.text) : '',
          };
        } else if (registering && ['login-failed', 'login-throttled', 'busy'].includes(m.code)) {
          this.prompt = { shown: true, message: m.text, suggestion: this.wanted, password: true };
        }
        break;
      }
      case 'bye':
        this.system(shown, `The server says goodbye: ${m.text}`);
        break;
      case 'pong':
        if (m.token !== KEEPALIVE_TOKEN) this.system(shown, m.token ? `PONG ${m.token}` : 'PONG: the server answers.');
        break;
      case 'room':
        this.system(shown, `${m.room} (${m.members}) ${m.topic}`.trim());
        break;
      case 'rooms':
        this.system(shown, `${m.count} rooms listed; /join #room to enter one.`);
        break;
      case 'account':
        this.account = { nick: m.nick, role: m.role };
        this.system(shown, m.text);
        break;
      case 'mod': {
        const verbs = { kick: 'kicked', mute: 'muted', unmute: 'unmuted', ban: 'banned', unban: 'unbanned' };
        const until = m.until ? ` until ${new Date(m.until).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}` : '';
        const why = m.text ? ` (${m.text})` : '';
        const pane = this.pane(m.room) ?? shown;
        this.system(pane, `${m.op} ${verbs[m.action] ?? m.action} ${m.nick}${until}${why}`, 'error', m.time);
        break;
      }
      case 'invalid':
        this.system(shown, m.line, 'raw');
        break;
      default:
        break;
    }
    return out;
  }

  /** The `HISTORY before` request for the shown pane, or null if there is nothing to ask. */
  older() {
    const pane = this.shown;
    if (this.conn !== 'online' || this.historyOff || pane.fetching || pane.exhausted) return null;
    if (pane.kind === 'room' && !pane.joined) return null;
    if (pane.lines.length >= SCROLLBACK) return null;
    pane.fetching = true;
    return pane.oldestId > 0 ? `HISTORY ${pane.name} before ${pane.oldestId}` : `HISTORY ${pane.name}`;
  }

  /** The rooms to join again after a reconnection (the lobby comes by itself), shown one last. */
  rejoin() {
    const rooms = this.panes.filter((p) => p.kind === 'room' && fold(p.name) !== fold(LOBBY) && isRoom(p.name));
    rooms.sort((a, b) => (a.key === this.shownKey) - (b.key === this.shownKey));
    return rooms.map((p) => p.name);
  }
}

/** A new sequence number for lines the app adds itself. */
export function seq() {
  return nextSeq++;
}
