// natter's line protocol as values (PROTOCOL.md): server lines parsed into
// plain objects, client commands formatted into lines, and what the user
// typed turned into commands. Pure: no DOM, no socket, no clock, so
// `node --test` checks it without a browser.

/** The most messages one `HISTORY` answer holds; a full `since` page means ask again. */
export const HISTORY_MAX = 500;

/** The room every user lands in on registering. */
export const LOBBY = '#lobby';

/** The PING token of keepalive pings, whose PONGs are not shown. */
export const KEEPALIVE_TOKEN = 'natter-keepalive';

/** The slash commands known here, for Tab completion. */
export const SLASH_COMMANDS = [
  '/ban', '/bans', '/close', '/exit', '/help', '/history', '/join', '/kick', '/leave', '/login',
  '/msg', '/mute', '/nick', '/part', '/password', '/ping', '/query', '/quit', '/register',
  '/rooms', '/topic', '/unban', '/unmute', '/users', '/w', '/whisper',
];

const NICK_RE = /^[A-Za-z][A-Za-z0-9_-]{0,15}$/;
const ROOM_RE = /^#[A-Za-z0-9_-]{1,31}$/;
const ID_RE = /^[1-9][0-9]{0,19}$/;

/** True if `s` is a valid nickname (PROTOCOL.md, Nicknames). */
export function isNick(s) {
  return NICK_RE.test(s);
}

/** True if `s` is a valid room name, `#` included. */
export function isRoom(s) {
  return ROOM_RE.test(s);
}

/** Names compare case-insensitively (ASCII only, as on the server). */
export function fold(name) {
  return name.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/**
 * Splits `line` into `n` space-separated fields and the rest (the text
 * field, which may hold spaces or be empty). Returns null when fewer than
 * `n` fields are present, so a short line is refused rather than misread.
 */
function fields(line, n) {
  const out = [];
  let rest = line;
  for (let i = 0; i < n; i += 1) {
    if (rest === '') return null;
    const sp = rest.indexOf(' ');
    if (sp < 0) {
      out.push(rest);
      rest = '';
    } else {
      out.push(rest.slice(0, sp));
      rest = rest.slice(sp + 1);
    }
    if (out[i] === '') return null;
  }
  out.push(rest);
  return out;
}

/** A message id as a number, or null: ids are positive integers. */
function parseId(s) {
  if (!ID_RE.test(s)) return null;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : null;
}

/** A server time (RFC 3339, UTC) as milliseconds since the epoch, or null. */
export function parseTime(s) {
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(s)) return null;
  const ms = Date.parse(s);
  return Number.isNaN(ms) ? null : ms;
}

/**
 * Parses one server line (without its line end) into an object whose
 * `type` is the keyword. Lines with a keyword this client does not know
 * give `{type: 'unknown'}` (PROTOCOL.md: clients ignore them); lines that
 * are broken give `{type: 'invalid', line, error}`. Never throws.
 */
export function parseLine(raw) {
  const line = String(raw).replace(/[\r\n]+$/, '');
  const sp = line.indexOf(' ');
  const keyword = sp < 0 ? line : line.slice(0, sp);
  const body = sp < 0 ? '' : line.slice(sp + 1);
  const bad = (error) => ({ type: 'invalid', line, error });
  const timed = (f) => {
    const time = parseTime(f[0]);
    return time === null ? null : time;
  };
  let f;
  switch (keyword) {
    case 'HELLO':
      f = fields(body, 1);
      return f ? { type: 'hello', version: f[0], text: f[1] } : bad('HELLO needs a version');
    case 'WELCOME':
      f = fields(body, 1);
      return f ? { type: 'welcome', nick: f[0], text: f[1] } : bad('WELCOME needs a nick');
    case 'MSG': {
      f = fields(body, 4);
      if (!f) return bad('MSG needs time, id, room and nick');
      const time = timed(f);
      const id = parseId(f[1]);
      if (time === null || id === null) return bad('MSG has a bad time or id');
      return { type: 'msg', time, id, room: f[2], nick: f[3], text: f[4] };
    }
    case 'WHISPER': {
      f = fields(body, 4);
      if (!f) return bad('WHISPER needs time, id, from and to');
      const time = timed(f);
      const id = parseId(f[1]);
      if (time === null || id === null) return bad('WHISPER has a bad time or id');
      return { type: 'whisper', time, id, from: f[2], to: f[3], text: f[4] };
    }
    case 'JOIN': {
      f = fields(body, 3);
      if (!f || f[3] !== '') return bad('JOIN needs time, room and nick');
      const time = timed(f);
      return time === null ? bad('JOIN has a bad time') : { type: 'join', time, room: f[1], nick: f[2] };
    }
    case 'PART': {
      f = fields(body, 3);
      if (!f) return bad('PART needs time, room and nick');
      const time = timed(f);
      return time === null
        ? bad('PART has a bad time')
        : { type: 'part', time, room: f[1], nick: f[2], text: f[3] };
    }
    case 'QUIT': {
      f = fields(body, 2);
      if (!f) return bad('QUIT needs time and nick');
      const time = timed(f);
      return time === null ? bad('QUIT has a bad time') : { type: 'quit', time, nick: f[1], text: f[2] };
    }
    case 'NICK': {
      f = fields(body, 3);
      if (!f || f[3] !== '') return bad('NICK needs time, old and new');
      const time = timed(f);
      return time === null ? bad('NICK has a bad time') : { type: 'nick', time, old: f[1], nick: f[2] };
    }
    case 'TOPIC': {
      f = fields(body, 3);
      if (!f) return bad('TOPIC needs time, room and nick');
      const time = timed(f);
      return time === null
        ? bad('TOPIC has a bad time')
        : { type: 'topic', time, room: f[1], nick: f[2], text: f[3] };
    }
    case 'USERS':
    case 'JOINS':
    case 'PARTS': {
      // USERS: everyone in the room. JOINS and PARTS (protocol 1.1): who
      // came to and left a big room since the last of these, or, right
      // after USERS, the rest of its list.
      f = fields(body, 1);
      if (!f) return bad(`${keyword} needs a room`);
      const nicks = f[1].split(' ').filter((n) => n !== '');
      return { type: keyword.toLowerCase(), room: f[0], nicks };
    }
    case 'PONG':
      return { type: 'pong', token: body };
    case 'INFO':
      return { type: 'info', text: body };
    case 'ERR':
      f = fields(body, 1);
      return f ? { type: 'err', code: f[0], text: f[1] } : bad('ERR needs a code');
    case 'BYE':
      return { type: 'bye', text: body };
    case 'ROOM': {
      f = fields(body, 2);
      const members = f ? Number(f[1]) : NaN;
      if (!f || !Number.isSafeInteger(members)) return bad('ROOM needs a room and a count');
      return { type: 'room', room: f[0], members, topic: f[2] };
    }
    case 'ROOMS': {
      const count = Number(body);
      return /^\d+$/.test(body) ? { type: 'rooms', count } : bad('ROOMS needs a count');
    }
    case 'ACCOUNT':
      f = fields(body, 2);
      return f ? { type: 'account', nick: f[0], role: f[1], text: f[2] } : bad('ACCOUNT needs nick and role');
    case 'MOD': {
      f = fields(body, 6);
      if (!f) return bad('MOD needs time, room, op, action, nick and until');
      const time = timed(f);
      if (time === null) return bad('MOD has a bad time');
      const until = f[5] === '-' ? null : parseTime(f[5]);
      return { type: 'mod', time, room: f[1], op: f[2], action: f[3], nick: f[4], until, text: f[6] };
    }
    case 'HIST': {
      if (body.startsWith('END ')) {
        f = fields(body.slice(4), 2);
        const count = f ? Number(f[1]) : NaN;
        if (!f || !/^\d+$/.test(f[1]) || f[2] !== '') return bad('HIST END needs a target and a count');
        return { type: 'histEnd', target: f[0], count };
      }
      const inner = parseLine(body);
      if (inner.type !== 'msg' && inner.type !== 'whisper') return bad('HIST holds only MSG or WHISPER');
      return { type: 'hist', line: inner };
    }
    default:
      return { type: 'unknown', keyword, line };
  }
}

/** Removes control characters (the server would too) and line breaks. */
export function clean(text) {
  // eslint-disable-next-line no-control-regex
  return String(text).replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');
}

/** Client lines in their canonical form (PROTOCOL.md section 2). */
export const format = {
  nick: (nick) => `NICK ${clean(nick).trim()}`,
  login: (nick, password) => `LOGIN ${clean(nick).trim()} ${clean(password).trim()}`,
  register: (password) => `REGISTER ${clean(password).trim()}`,
  msg: (room, text) => `MSG ${room} ${clean(text)}`,
  whisper: (nick, text) => `WHISPER ${nick} ${clean(text)}`,
  join: (room) => `JOIN ${room}`,
  part: (room, reason = '') => (reason ? `PART ${room} ${clean(reason)}` : `PART ${room}`),
  topic: (room, text = '') => (text ? `TOPIC ${room} ${clean(text)}` : `TOPIC ${room}`),
  users: (room) => `USERS ${room}`,
  ping: (token = '') => (token ? `PING ${clean(token)}` : 'PING'),
  quit: (reason = '') => (reason ? `QUIT ${clean(reason)}` : 'QUIT'),
  /** `query` is `{since: id}`, `{before: id}`, `{count: n}` or nothing (the newest 50). */
  history: (target, query = {}) => {
    if (query.since !== undefined) return `HISTORY ${target} since ${query.since}`;
    if (query.before !== undefined) return `HISTORY ${target} before ${query.before}`;
    if (query.count !== undefined) return `HISTORY ${target} ${query.count}`;
    return `HISTORY ${target}`;
  },
};

/** `rust` and `#rust` both mean `#rust`, as `/join rust` does on the server. */
export function roomName(word) {
  return word.startsWith('#') ? word : `#${word}`;
}

/**
 * What a line typed in the page means, for `shown` (`{kind: 'room'|'private',
 * name}`), as the TUI reads it: plain text is chat in the shown pane (a
 * whisper in a private one); slash commands are PROTOCOL.md's with the shown
 * room filled in; `/query nick` (or `/w nick` without text) opens a private
 * pane, `/close` closes the shown one, `/history` fetches older messages;
 * `//text` sends `/text`; unknown slash commands go to the server as typed.
 *
 * Returns one of:
 * `{action: 'none'}`, `{action: 'say', room, text}`, `{action: 'whisper', nick, text}`,
 * `{action: 'send', line}`, `{action: 'join', room}`, `{action: 'query', nick}`,
 * `{action: 'close'}`, `{action: 'older'}`, `{action: 'help'}`,
 * `{action: 'nick', nick}`, `{action: 'quit', reason}`, `{action: 'error', text}`.
 */
export function parseInput(input, shown) {
  const line = clean(input).trim();
  if (line === '') return { action: 'none' };
  const chat = (text) =>
    shown.kind === 'private'
      ? { action: 'whisper', nick: shown.name, text }
      : { action: 'say', room: shown.name, text };
  if (line.startsWith('//')) return chat(line.slice(1));
  if (!line.startsWith('/')) return chat(line);
  const sp = line.indexOf(' ');
  const verb = (sp < 0 ? line.slice(1) : line.slice(1, sp)).toLowerCase();
  const arg = sp < 0 ? '' : line.slice(sp + 1).trim();
  const [first = '', ...others] = arg.split(/ +/);
  const restAfterFirst = arg.slice(first.length).trim();
  const room = shown.kind === 'room' ? shown.name : null;
  const needRoom = (what) => ({ action: 'error', text: `${what} works in a room; this is a private conversation.` });
  switch (verb) {
    case 'join':
      if (!first) return { action: 'error', text: '/join needs a room, as in /join #rust' };
      return { action: 'join', room: roomName(first) };
    case 'part':
    case 'leave':
      if (first.startsWith('#')) return { action: 'send', line: format.part(first, restAfterFirst) };
      if (!room) return { action: 'close' };
      return { action: 'send', line: format.part(room, arg) };
    case 'close':
      return { action: 'close' };
    case 'topic':
      if (first.startsWith('#')) return { action: 'send', line: format.topic(first, restAfterFirst) };
      if (!room) return needRoom('/topic');
      return { action: 'send', line: format.topic(room, arg) };
    case 'users':
      if (first.startsWith('#')) return { action: 'send', line: format.users(first) };
      if (!room) return { action: 'error', text: `A private conversation with ${shown.name}.` };
      return { action: 'send', line: format.users(room) };
    case 'w':
    case 'msg':
    case 'whisper':
    case 'query':
      if (!first) return { action: 'error', text: `/${verb} needs a nickname, as in /${verb} bob` };
      if (verb === 'msg' && first.startsWith('#')) {
        return restAfterFirst ? { action: 'say', room: first, text: restAfterFirst } : { action: 'none' };
      }
      if (!isNick(first)) return { action: 'error', text: `${first} is not a nickname.` };
      if (!restAfterFirst) return { action: 'query', nick: first };
      return { action: 'whisper', nick: first, text: restAfterFirst, open: verb === 'query' };
    case 'nick':
      if (!first) return { action: 'error', text: '/nick needs a nickname, as in /nick bob' };
      return { action: 'nick', nick: first };
    case 'history':
      if (!first) return { action: 'older' };
      return { action: 'send', line: `HISTORY ${arg}` };
    case 'help':
      return { action: 'help' };
    case 'quit':
    case 'exit':
      return { action: 'quit', reason: arg };
    case 'login':
      if (others.length < 1) return { action: 'error', text: '/login needs a nickname and a password' };
      return { action: 'send', line: format.login(first, others.join(' ')), secret: true };
    case 'register':
      if (!first) return { action: 'error', text: '/register needs a password' };
      return { action: 'send', line: format.register(arg), secret: true };
    case 'password':
      return { action: 'send', line: `PASSWORD ${arg}`, secret: true };
    case 'ping':
      return { action: 'send', line: format.ping(arg) };
    case 'rooms':
      return { action: 'send', line: 'ROOMS' };
    default:
      return { action: 'send', line };
  }
}

/**
 * The nickname an `ERR nick-taken`, `nick-invalid` or `nick-registered`
 * suggests: the last word of its text, if that is a valid nickname.
 */
export function suggestion(text) {
  const word = String(text).trim().split(' ').pop() || '';
  const trimmed = word.replace(/[.,;:!?]+$/, '');
  return isNick(trimmed) ? trimmed : '';
}

/**
 * True if `text` mentions `nick` as a whole word, ignoring ASCII case:
 * `bob:` and `@bob` do, `bobby` does not.
 */
export function mentions(text, nick) {
  if (!nick) return false;
  const t = fold(text);
  const n = fold(nick);
  const word = /[A-Za-z0-9_-]/;
  let at = t.indexOf(n);
  while (at >= 0) {
    const before = at === 0 ? '' : t[at - 1];
    const after = t[at + n.length] ?? '';
    if (!word.test(before) && !word.test(after)) return true;
    at = t.indexOf(n, at + 1);
  }
  return false;
}

/**
 * Splits text into pieces for display: `{text}` and `{url}` for http(s)
 * links, so the page builds links as elements and never parses HTML.
 */
export function linkify(text) {
  const out = [];
  const re = /\bhttps?:\/\/[^\s<>"']+/gi;
  let last = 0;
  for (const m of text.matchAll(re)) {
    let url = m[0].replace(/[.,;:!?)\]]+$/, '');
    let ok = false;
    try {
      const parsed = new URL(url);
      ok = parsed.protocol === 'http:' || parsed.protocol === 'https:';
    } catch {
      ok = false;
    }
    if (!ok) continue;
    if (m.index > last) out.push({ text: text.slice(last, m.index) });
    out.push({ url });
    last = m.index + url.length;
  }
  if (last < text.length) out.push({ text: text.slice(last) });
  return out;
}

/** A stable hue (0–359) for a nickname, so each nick keeps its colour. */
export function nickHue(nick) {
  let h = 2166136261;
  for (const ch of fold(nick)) {
    h ^= ch.codePointAt(0);
    h = Math.imul(h, 16777619);
  }
  return (h >>> 0) % 360;
}
