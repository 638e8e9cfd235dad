// natter's web client: wires the connection, the state and the views.
// The page is a shell; everything peer-supplied is added as text.

import { format, fold, isNick, parseInput, parseLine } from './protocol.js';
import { State } from './state.js';
import { Connection, socketUrl } from './connection.js';
import { MessagesView } from './view-messages.js';
import { RoomsView } from './view-rooms.js';
import { UsersView } from './view-users.js';
import { LoginView, saveNick } from './view-login.js';
import { ComposerView } from './view-composer.js';
import { askPermission, canNotify, notify, setTitle } from './notify.js';

const $ = (id) => document.getElementById(id);

const LOCAL_HELP = [
  'Keys: Enter sends · Up/Down recall · Tab completes nicknames. Start a message with // to begin it with a slash.',
  'Here: /query nick (or /w nick) opens a private conversation, /close closes it, /history fetches older messages.',
];

const state = new State();
/** What to register with: a nickname and, for an account, its password (memory only). */
let registration = null;
/** Retries of a nickname the server still thinks is ours, just after a reconnection. */
let takenRetries = 0;
/**
 * The server closed us on purpose (kicked, banned, or this account logged
 * in elsewhere): coming back at once would undo it, or fight the other tab.
 */
let dismissed = false;

const conn = new Connection(socketUrl(), {
  onLine(text) {
    const m = parseLine(text);
    if (m.type === 'err' && m.code === 'nick-taken' && state.nick === null && state.welcomedBefore && takenRetries < 3) {
      // Our old connection may not be gone from the server yet.
      takenRetries += 1;
      setTimeout(register, 1000);
      return;
    }
    if (m.type === 'err' && (m.code === 'kicked' || (m.code === 'banned' && state.nick !== null))) dismissed = true;
    if (m.type === 'bye' && (dismissed || /another connection/i.test(m.text))) {
      dismissed = false;
      state.apply(m);
      conn.stop();
      state.prompt = { shown: true, message: m.text, suggestion: state.wanted, password: Boolean(registration?.password) };
      render();
      return;
    }
    if (m.type === 'err' && m.code === 'login-failed' && registration) registration.password = '';
    const out = state.apply(m);
    if (m.type === 'welcome') {
      takenRetries = 0;
      saveNick(m.nick);
      for (const room of state.rejoin()) conn.send(format.join(room));
    }
    if (m.type === 'nick' && state.isMe(m.nick)) saveNick(m.nick);
    for (const line of out) conn.send(line);
    for (const a of state.alerts.splice(0)) notify(a);
    render();
  },
  onState(s, detail) {
    if (s === 'open') {
      state.setConn('registering');
      register();
    } else {
      state.setConn(s, detail);
    }
    render();
  },
});

/** Registers with the nickname (or account) chosen, once there is one. */
function register() {
  if (!registration || !conn.open) return;
  if (registration.password) conn.send(format.login(registration.nick, registration.password));
  else conn.send(format.nick(state.wanted || registration.nick));
}

const login = new LoginView($('login'), {
  onSubmit(nick, password) {
    if (!isNick(nick)) {
      state.prompt = { shown: true, message: `${nick} is not a nickname: use letters, digits, _ and -, starting with a letter.`, suggestion: '', password: Boolean(password) };
      render();
      return;
    }
    registration = { nick, password };
    state.wanted = nick;
    conn.restart();
    state.prompt = { ...state.prompt, message: '' };
    saveNick(nick);
    register();
    render();
  },
});

const messages = new MessagesView($('messages'), {
  onTop() {
    const line = state.older();
    if (line) {
      conn.send(line);
      render();
    }
  },
});

function closeDrawers() {
  for (const [btn, panel] of [['open-rooms', 'rooms-panel'], ['open-users', 'users-panel']]) {
    $(panel).classList.remove('open');
    $(btn).setAttribute('aria-expanded', 'false');
  }
  $('scrim').hidden = true;
}

function toggleDrawer(btn, panel) {
  const open = !$(panel).classList.contains('open');
  closeDrawers();
  if (!open) return;
  $(panel).classList.add('open');
  $(btn).setAttribute('aria-expanded', 'true');
  $('scrim').hidden = false;
  $(panel).querySelector('button, input')?.focus();
}

$('open-rooms').addEventListener('click', () => toggleDrawer('open-rooms', 'rooms-panel'));
$('open-users').addEventListener('click', () => toggleDrawer('open-users', 'users-panel'));
$('scrim').addEventListener('click', closeDrawers);
document.addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape' && !$('scrim').hidden) {
    closeDrawers();
    $('message-input').focus();
  }
});

function showPane(key) {
  state.show(key);
  closeDrawers();
  render();
  $('message-input').focus();
}

const rooms = new RoomsView($('rooms'), { onPick: showPane });
const users = new UsersView($('users'), {
  onPick(nick) {
    openPrivate(nick);
    closeDrawers();
    render();
  },
});

/** Opens (or shows) the private pane with `nick`; a new one fetches its recent history. */
function openPrivate(nick) {
  const existed = Boolean(state.pane(nick));
  const pane = state.open('private', nick);
  state.show(pane.key);
  if (state.nick) pane.users = [state.nick, nick];
  if (!existed) {
    const line = state.older();
    if (line) conn.send(line);
  }
  return pane;
}

/** Sends `line` if registered; otherwise says so and keeps the input. */
function sendOrKeep(line, needsNick = true) {
  const ok = (!needsNick || state.conn === 'online') && conn.send(line);
  if (!ok) {
    state.system(state.shown, 'Not connected: your line is kept; press Enter again once online.', 'error');
  }
  return ok;
}

function submit(input) {
  const shown = state.shown;
  const cmd = parseInput(input, { kind: shown.kind, name: shown.name });
  let clear = true;
  switch (cmd.action) {
    case 'none':
      break;
    case 'say': {
      clear = sendOrKeep(format.msg(cmd.room, cmd.text));
      if (clear) state.echo(state.pane(cmd.room) ?? shown, cmd.text);
      break;
    }
    case 'whisper': {
      if (state.isMe(cmd.nick)) {
        state.system(shown, 'That is you; pick someone else to talk to.', 'error');
        clear = false;
        break;
      }
      clear = sendOrKeep(format.whisper(cmd.nick, cmd.text));
      if (clear) {
        const pane = state.open('private', cmd.nick);
        state.echo(pane, cmd.text);
        if (cmd.open) state.show(pane.key);
      }
      break;
    }
    case 'join': {
      const pane = state.pane(cmd.room);
      if (pane && pane.joined) {
        state.show(pane.key);
        break;
      }
      clear = sendOrKeep(format.join(cmd.room));
      if (clear) state.switchTo = fold(cmd.room);
      break;
    }
    case 'query':
      if (state.isMe(cmd.nick)) {
        state.system(shown, 'That is you; pick someone else to talk to.', 'error');
        clear = false;
      } else {
        openPrivate(cmd.nick);
      }
      break;
    case 'close':
      if (shown.kind === 'room') clear = sendOrKeep(format.part(shown.name));
      else if (state.panes.length > 1) state.close(shown);
      break;
    case 'older': {
      const line = state.older();
      if (line) conn.send(line);
      else state.system(shown, state.historyOff ? 'This server keeps no history.' : shown.exhausted ? 'There is nothing older here.' : 'Nothing to fetch now.');
      break;
    }
    case 'help':
      for (const text of LOCAL_HELP) state.system(shown, text);
      conn.send('HELP');
      break;
    case 'nick':
      if (state.nick === null) state.wanted = cmd.nick;
      clear = sendOrKeep(format.nick(cmd.nick), false);
      break;
    case 'quit':
      conn.send(format.quit(cmd.reason));
      conn.stop();
      state.prompt = { shown: true, message: 'You left the chat.', suggestion: state.wanted, password: false };
      break;
    case 'send':
      if (cmd.secret && registration && /^LOGIN /.test(cmd.line)) {
        const [, nick, password] = cmd.line.split(' ');
        registration = { nick, password };
      }
      clear = sendOrKeep(cmd.line, !/^(LOGIN|PING|NICK) /.test(cmd.line));
      break;
    case 'error':
      state.system(shown, cmd.text, 'error');
      clear = false;
      break;
    default:
      break;
  }
  render();
  return { clear, secret: Boolean(cmd.secret) };
}

new ComposerView($('composer'), $('message-input'), {
  onSend: submit,
  candidates: () => state.shown.users.filter((u) => !state.isMe(u)),
});

$('join-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const v = $('join-input').value.trim();
  if (!v) return;
  const { clear } = submit(`/join ${v}`);
  if (clear) $('join-input').value = '';
  closeDrawers();
});

$('register-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const pw = $('register-password').value;
  if (pw.length < 8 || /\s/.test(pw)) {
    state.system(state.shown, 'A password is one word of 8 to 128 characters.', 'error');
    render();
    return;
  }
  if (sendOrKeep(format.register(pw))) {
    registration = { nick: state.nick, password: pw };
    $('register-password').value = '';
  }
  render();
});

const notifyBtn = $('notify-btn');
notifyBtn.hidden = !canNotify();
notifyBtn.addEventListener('click', async () => {
  const answer = await askPermission();
  notifyBtn.textContent = answer === 'granted' ? 'Notifications are on' : 'Notifications are blocked';
});

function statusText() {
  switch (state.conn) {
    case 'online':
      return state.account ? `online as ${state.nick} (${state.account.role})` : `online as ${state.nick}`;
    case 'registering':
      return 'connected, not signed in';
    case 'connecting':
      return 'connecting…';
    case 'offline':
      return navigator.onLine === false ? `offline (no network): ${state.connDetail}` : `disconnected: ${state.connDetail}`;
    default:
      return 'disconnected';
  }
}

let scheduled = false;
/**
 * Redraws once after the current batch of changes. A microtask, not an
 * animation frame: hidden pages get no frames, and their lines must still
 * be counted and shown when the user comes back.
 */
function render() {
  if (scheduled) return;
  scheduled = true;
  queueMicrotask(draw);
}

function draw() {
  scheduled = false;
  const pane = state.shown;
  login.render(state);
  rooms.render(state);
  users.render(state);
  messages.render(pane);
  $('pane-title').textContent = pane.kind === 'room' ? pane.name : `${pane.name} (private)`;
  $('topic').textContent = pane.topic;
  const status = $('status');
  status.textContent = statusText();
  status.classList.toggle('online', state.conn === 'online');
  $('message-input').placeholder = pane.kind === 'room' ? `Message ${pane.name}` : `Whisper to ${pane.name}`;
  const unread = state.unread;
  const badge = $('total-unread');
  badge.hidden = unread === 0;
  badge.textContent = String(unread);
  badge.classList.toggle('alert', state.panes.some((p) => p.alert));
  setTitle(unread);
}

// While the page is hidden, what arrives counts in the tab title; coming back reads it.
document.addEventListener('visibilitychange', () => {
  state.away = document.visibilityState === 'hidden';
  if (!state.away) state.show(state.shownKey);
  render();
});

if ('serviceWorker' in navigator && location.protocol !== 'file:') {
  navigator.serviceWorker.register('/sw.js').catch(() => {});
}

draw();
conn.connect();
