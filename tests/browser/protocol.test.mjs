// web/protocol.js without a browser: server lines parse as PROTOCOL.md
// says, broken lines never throw, and typed lines mean what they mean in
// the TUI.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  format, isNick, isRoom, linkify, mentions, nickHue, parseInput, parseLine, suggestion,
} from '../../web/protocol.js';

const T = '2026-11-26T09:51:28Z';
const MS = Date.parse(T);

test('chat and private lines carry time, id, names and the whole text', () => {
  assert.deepEqual(parseLine(`MSG ${T} 7 #rust alice has anyone  tried it?`), {
    type: 'msg', time: MS, id: 7, room: '#rust', nick: 'alice', text: 'has anyone  tried it?',
  });
  assert.deepEqual(parseLine(`WHISPER ${T} 5 alice bob sure, noon works\r\n`), {
    type: 'whisper', time: MS, id: 5, from: 'alice', to: 'bob', text: 'sure, noon works',
  });
  assert.deepEqual(parseLine(`MSG ${T} 8 #lobby bob `).text, '');
});

test('history replays and their end', () => {
  const h = parseLine(`HIST MSG ${T} 1 #rust alice hi`);
  assert.equal(h.type, 'hist');
  assert.equal(h.line.id, 1);
  assert.deepEqual(parseLine('HIST END #rust 1'), { type: 'histEnd', target: '#rust', count: 1 });
  assert.deepEqual(parseLine('HIST END bob 0'), { type: 'histEnd', target: 'bob', count: 0 });
  assert.equal(parseLine('HIST JOIN x').type, 'invalid');
  assert.equal(parseLine('HIST END #rust many').type, 'invalid');
});

test('presence, topics, accounts and operators', () => {
  assert.deepEqual(parseLine('HELLO natter/1 Welcome to natter! Pick a nickname'), {
    type: 'hello', version: 'natter/1', text: 'Welcome to natter! Pick a nickname',
  });
  assert.deepEqual(parseLine('WELCOME bob Hello bob!'), { type: 'welcome', nick: 'bob', text: 'Hello bob!' });
  assert.deepEqual(parseLine(`JOIN ${T} #lobby bob`), { type: 'join', time: MS, room: '#lobby', nick: 'bob' });
  assert.deepEqual(parseLine(`PART ${T} #rust bob bye all`), { type: 'part', time: MS, room: '#rust', nick: 'bob', text: 'bye all' });
  assert.deepEqual(parseLine(`QUIT ${T} alice lunch`), { type: 'quit', time: MS, nick: 'alice', text: 'lunch' });
  assert.deepEqual(parseLine(`NICK ${T} bob robert`), { type: 'nick', time: MS, old: 'bob', nick: 'robert' });
  assert.deepEqual(parseLine('USERS #lobby alice bob'), { type: 'users', room: '#lobby', nicks: ['alice', 'bob'] });
  assert.deepEqual(parseLine('USERS #empty'), { type: 'users', room: '#empty', nicks: [] });
  assert.deepEqual(parseLine(`TOPIC ${T} #rust alice All things Rust`), {
    type: 'topic', time: MS, room: '#rust', nick: 'alice', text: 'All things Rust',
  });
  assert.deepEqual(parseLine('ROOM #rust 1 All things Rust'), { type: 'room', room: '#rust', members: 1, topic: 'All things Rust' });
  assert.deepEqual(parseLine('ROOMS 2'), { type: 'rooms', count: 2 });
  assert.deepEqual(parseLine('ACCOUNT alice op You are logged in as alice.'), {
    type: 'account', nick: 'alice', role: 'op', text: 'You are logged in as alice.',
  });
  const mod = parseLine(`MOD ${T} #lobby oscar mute dave 2026-11-26T12:11:05Z please stop`);
  assert.equal(mod.action, 'mute');
  assert.equal(mod.until, Date.parse('2026-11-26T12:11:05Z'));
  assert.equal(mod.text, 'please stop');
  assert.equal(parseLine(`MOD ${T} #lobby oscar kick dave -`).until, null);
  assert.deepEqual(parseLine('PONG 42'), { type: 'pong', token: '42' });
  assert.deepEqual(parseLine('PONG'), { type: 'pong', token: '' });
  assert.deepEqual(parseLine('BYE Goodbye!'), { type: 'bye', text: 'Goodbye!' });
});

test('errors keep their code, and the nickname suggestion is the last word', () => {
  const e = parseLine('ERR nick-taken Someone already uses the nickname Alice; try Alice2');
  assert.deepEqual(e, { type: 'err', code: 'nick-taken', text: 'Someone already uses the nickname Alice; try Alice2' });
  assert.equal(suggestion(e.text), 'Alice2');
  assert.equal(suggestion('alice is a registered nickname: ... such as guest'), 'guest');
  assert.equal(suggestion('nothing to suggest here.'), 'here');
  assert.equal(suggestion('try 2abc'), '');
  assert.equal(parseLine('ERR some-new-code A sentence.').code, 'some-new-code');
});

test('unknown keywords are ignored and broken lines are reported, never thrown', () => {
  assert.equal(parseLine('SHINY new stuff').type, 'unknown');
  for (const bad of ['MSG', `MSG ${T}`, `MSG ${T} x #r a t`, 'MSG yesterday 1 #r a t', `MSG ${T} 0 #r a t`,
    `JOIN ${T} #r`, 'NICK', 'ERR', 'ROOMS x', 'ROOM #r many', `WHISPER ${T} 1 a`, 'MSG  1 #r a t',
    `MSG ${T} 99999999999999999999 #r a t`]) {
    assert.equal(parseLine(bad).type, 'invalid', bad);
  }
  for (const junk of ['', ' ', '\u0000', 'HIST', 'HIST HIST HIST', '\ud800', 'x'.repeat(20000)]) {
    assert.doesNotThrow(() => parseLine(junk));
  }
});

test('client lines are canonical and carry no line breaks or control characters', () => {
  assert.equal(format.msg('#rust', 'hi\r\nQUIT'), 'MSG #rust hi  QUIT');
  assert.equal(format.whisper('bob', 'psst'), 'WHISPER bob psst');
  assert.equal(format.history('#rust', { since: 41 }), 'HISTORY #rust since 41');
  assert.equal(format.history('bob', { before: 9 }), 'HISTORY bob before 9');
  assert.equal(format.history('#rust'), 'HISTORY #rust');
  assert.equal(format.login('alice', 'correct-horse'), 'LOGIN alice correct-horse');
  assert.equal(format.part('#rust'), 'PART #rust');
  assert.equal(format.topic('#rust', 'new'), 'TOPIC #rust new');
});

test('typed lines mean what they mean in the TUI', () => {
  const room = { kind: 'room', name: '#rust' };
  const priv = { kind: 'private', name: 'bob' };
  assert.deepEqual(parseInput('hello', room), { action: 'say', room: '#rust', text: 'hello' });
  assert.deepEqual(parseInput('hello', priv), { action: 'whisper', nick: 'bob', text: 'hello' });
  assert.deepEqual(parseInput('//shrug', room), { action: 'say', room: '#rust', text: '/shrug' });
  assert.deepEqual(parseInput('QUIT bugging me', room), { action: 'say', room: '#rust', text: 'QUIT bugging me' });
  assert.deepEqual(parseInput('/join rust', room), { action: 'join', room: '#rust' });
  assert.deepEqual(parseInput('/JOIN #Go', room), { action: 'join', room: '#Go' });
  assert.deepEqual(parseInput('/part', room), { action: 'send', line: 'PART #rust' });
  assert.deepEqual(parseInput('/leave', priv), { action: 'close' });
  assert.deepEqual(parseInput('/topic Rust things', room), { action: 'send', line: 'TOPIC #rust Rust things' });
  assert.equal(parseInput('/topic x', priv).action, 'error');
  assert.deepEqual(parseInput('/msg bob lunch?', room), { action: 'whisper', nick: 'bob', text: 'lunch?', open: false });
  assert.deepEqual(parseInput('/w bob', room), { action: 'query', nick: 'bob' });
  assert.deepEqual(parseInput('/query bob', room), { action: 'query', nick: 'bob' });
  assert.deepEqual(parseInput('/msg #go hi there', room), { action: 'say', room: '#go', text: 'hi there' });
  assert.deepEqual(parseInput('/users', room), { action: 'send', line: 'USERS #rust' });
  assert.deepEqual(parseInput('/history', room), { action: 'older' });
  assert.deepEqual(parseInput('/nick robert', room), { action: 'nick', nick: 'robert' });
  assert.deepEqual(parseInput('/quit bye', room), { action: 'quit', reason: 'bye' });
  assert.equal(parseInput('/login alice pw12345678', room).secret, true);
  assert.equal(parseInput('/register pw12345678', room).line, 'REGISTER pw12345678');
  assert.deepEqual(parseInput('/kick dave spam', room), { action: 'send', line: '/kick dave spam' });
  assert.deepEqual(parseInput('   ', room), { action: 'none' });
});

test('names, mentions, links and colours', () => {
  assert.ok(isNick('alice') && isNick('A-1_b') && !isNick('1a') && !isNick('a'.repeat(17)));
  assert.ok(isRoom('#rust') && !isRoom('rust') && !isRoom('#') && !isRoom('#a b'));
  assert.ok(mentions('bob: hi', 'bob') && mentions('hi @Bob!', 'bob') && !mentions('bobby hi', 'bob'));
  assert.deepEqual(linkify('see https://example.org/a?b=1. ok'), [
    { text: 'see ' }, { url: 'https://example.org/a?b=1' }, { text: '. ok' },
  ]);
  assert.deepEqual(linkify('javascript:alert(1) <img src=x onerror=alert(1)>'), [
    { text: 'javascript:alert(1) <img src=x onerror=alert(1)>' },
  ]);
  assert.equal(nickHue('Alice'), nickHue('alice'));
  assert.ok(nickHue('alice') >= 0 && nickHue('alice') < 360);
});

test('the service worker caches only files the server embeds, and never /ws', () => {
  const files = readFileSync(new URL('../../web/FILES', import.meta.url), 'utf8').split('\n').filter(Boolean);
  const sw = readFileSync(new URL('../../web/sw.js', import.meta.url), 'utf8');
  const shell = [...sw.matchAll(/^\s+'(\/[^']*)',$/gm)].map((m) => m[1]);
  assert.ok(shell.includes('/'));
  for (const path of shell.filter((p) => p !== '/')) assert.ok(files.includes(path.slice(1)), path);
  assert.ok(!shell.includes('/ws'));
  for (const name of files) if (name.endsWith('.js') && name !== 'sw.js') assert.ok(shell.includes(`/${name}`), name);
});

test('no innerHTML, inline script or inline style anywhere in the page', () => {
  const files = readFileSync(new URL('../../web/FILES', import.meta.url), 'utf8').split('\n').filter(Boolean);
  for (const name of files.filter((n) => /\.(js|html)$/.test(n))) {
    const text = readFileSync(new URL(`../../web/${name}`, import.meta.url), 'utf8');
    assert.doesNotMatch(text, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(/, name);
    if (name.endsWith('.html')) {
      assert.doesNotMatch(text, /\sstyle=|\son[a-z]+=|<script(?![^>]*\bsrc=)/, name);
    }
  }
});

test('a different message under a known id is shown; the same one is not shown twice', async () => {
  const { State } = await import('../../web/state.js');
  const state = new State();
  state.apply(parseLine('HELLO natter/1 hi'));
  state.apply(parseLine('WELCOME bob Hello bob!'));
  state.apply(parseLine('JOIN 2026-12-07T10:00:00Z #lobby bob'));
  const lobby = state.pane('#lobby');
  assert.ok(lobby, 'the lobby pane');
  const chat = () => lobby.lines.filter((e) => e.kind === 'chat').map((e) => `${e.id}:${e.nick}:${e.text}`);
  state.apply(parseLine('MSG 2026-12-07T10:00:01Z 801 #lobby alice before the restart'));
  state.apply(parseLine('MSG 2026-12-07T10:00:01Z 801 #lobby alice before the restart'));
  state.apply(parseLine('MSG 2026-12-07T10:00:09Z 801 #lobby carol after the restart'));
  assert.deepEqual(chat(), ['801:alice:before the restart', '801:carol:after the restart']);
});

test('protocol 1.1: JOINS and PARTS parse like USERS', () => {
  assert.deepEqual(parseLine('JOINS #big alice bob'), { type: 'joins', room: '#big', nicks: ['alice', 'bob'] });
  assert.deepEqual(parseLine('PARTS #big carol\r\n'), { type: 'parts', room: '#big', nicks: ['carol'] });
  assert.equal(parseLine('JOINS').type, 'invalid');
  assert.equal(parseLine('PARTS').type, 'invalid');
});

test('a big room: the list comes as USERS then JOINS, and later JOINS and PARTS keep it exact', async () => {
  const { State } = await import('../../web/state.js');
  const state = new State();
  state.apply(parseLine('HELLO natter/1.1 hi'));
  state.apply(parseLine('WELCOME bob Hello bob!'));
  state.apply(parseLine('JOIN 2026-12-07T10:00:00Z #lobby bob'));
  const lobby = state.pane('#lobby');
  const said = () => lobby.lines.filter((e) => e.kind === 'join' || e.kind === 'leave').map((e) => e.text);
  const before = said().length;
  // A message may come from someone not listed yet.
  state.apply(parseLine('MSG 2026-12-07T10:00:01Z 5 #lobby zed early'));
  state.apply(parseLine('USERS #lobby alice bob'));
  state.apply(parseLine('JOINS #lobby carol dave'));
  state.apply(parseLine('JOINS #lobby zed'));
  assert.deepEqual(lobby.users, ['alice', 'bob', 'carol', 'dave', 'zed']);
  assert.equal(said().length, before, 'the rest of a list is not news');
  // A QUIT through another room came first: the PARTS removes nothing more.
  state.apply(parseLine('QUIT 2026-12-07T10:00:02Z dave gone'));
  state.apply(parseLine('PARTS #lobby carol dave'));
  state.apply(parseLine('JOINS #lobby dave erin'));
  assert.deepEqual(lobby.users, ['alice', 'bob', 'dave', 'erin', 'zed']);
  assert.deepEqual(said().slice(-3), ['dave left (gone)', 'carol left #lobby', 'dave, erin joined #lobby']);
});
