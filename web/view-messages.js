// The shown pane's lines: one <li data-testid="message"> per chat line
// (data-id, data-nick, the text in a data-testid="message-text" child),
// system lines, and a separator where the local day changes. Peer text
// reaches the DOM only as text nodes and <a> elements built here.

import { linkify, nickHue } from './protocol.js';

const timeFormat = new Intl.DateTimeFormat([], { hour: '2-digit', minute: '2-digit' });
const dayFormat = new Intl.DateTimeFormat([], { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });

/** Appends `text` to `parent`, http(s) links as <a> elements, the rest as text. */
export function appendText(parent, text) {
  for (const piece of linkify(text)) {
    if (piece.url) {
      const a = document.createElement('a');
      a.href = piece.url;
      a.rel = 'noopener noreferrer';
      a.target = '_blank';
      a.textContent = piece.url;
      parent.append(a);
    } else {
      parent.append(document.createTextNode(piece.text));
    }
  }
}

function localDay(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

function build(entry) {
  const li = document.createElement('li');
  const time = document.createElement('time');
  const d = new Date(entry.time);
  time.dateTime = d.toISOString();
  time.textContent = timeFormat.format(d);
  time.title = d.toLocaleString();
  if (entry.kind === 'chat' || entry.kind === 'whisper') {
    li.dataset.testid = 'message';
    li.dataset.nick = entry.nick;
    const nick = document.createElement('span');
    nick.className = 'nick';
    nick.textContent = entry.nick;
    nick.style.setProperty('--hue', String(nickHue(entry.nick)));
    const text = document.createElement('span');
    text.className = 'text';
    text.dataset.testid = 'message-text';
    appendText(text, entry.text);
    li.append(time, nick, text);
    li.classList.toggle('mention', Boolean(entry.mention));
  } else {
    li.className = `system ${entry.kind}`;
    li.dataset.testid = 'system';
    const text = document.createElement('span');
    text.textContent = entry.text;
    li.append(time, text);
  }
  return li;
}

export class MessagesView {
  constructor(ol, { onTop }) {
    this.ol = ol;
    this.nodes = new WeakMap();
    this.days = new Map();
    this.paneKey = null;
    this.version = -1;
    ol.addEventListener('scroll', () => {
      if (ol.scrollTop < 48) onTop();
    }, { passive: true });
  }

  nodeFor(entry) {
    let li = this.nodes.get(entry);
    if (!li) {
      li = build(entry);
      this.nodes.set(entry, li);
    }
    if (entry.kind === 'chat' || entry.kind === 'whisper') {
      li.dataset.id = entry.id === null ? '' : String(entry.id);
      li.classList.toggle('pending', entry.id === null);
    }
    return li;
  }

  dayNode(ms) {
    const key = localDay(ms);
    let li = this.days.get(key);
    if (!li) {
      li = document.createElement('li');
      li.className = 'day';
      li.setAttribute('role', 'separator');
      li.textContent = dayFormat.format(new Date(ms));
      this.days.set(key, li);
    }
    return li;
  }

  render(pane) {
    const switched = pane.key !== this.paneKey;
    if (!switched && pane.version === this.version) return;
    const ol = this.ol;
    const atBottom = ol.scrollHeight - ol.scrollTop - ol.clientHeight < 48;
    // The first line in view, to keep it in place when older lines arrive above.
    let anchor = null;
    let anchorTop = 0;
    if (!switched && !atBottom) {
      for (const li of ol.children) {
        if (li.offsetTop + li.offsetHeight > ol.scrollTop) {
          anchor = li;
          anchorTop = li.offsetTop - ol.scrollTop;
          break;
        }
      }
    }
    if (switched) {
      // Do not read a whole pane out on switching to it.
      ol.setAttribute('aria-live', 'off');
      this.days.clear();
    }
    const wanted = [];
    let day = null;
    for (const entry of pane.lines) {
      const d = localDay(entry.time);
      if (d !== day) {
        wanted.push(this.dayNode(entry.time));
        day = d;
      }
      wanted.push(this.nodeFor(entry));
    }
    let cur = ol.firstChild;
    for (const node of wanted) {
      if (node === cur) {
        cur = cur.nextSibling;
      } else {
        ol.insertBefore(node, cur);
      }
    }
    while (cur) {
      const next = cur.nextSibling;
      cur.remove();
      cur = next;
    }
    ol.setAttribute('aria-busy', String(pane.fetching));
    if (switched || atBottom) {
      ol.scrollTop = ol.scrollHeight;
    } else if (anchor && anchor.isConnected) {
      ol.scrollTop = anchor.offsetTop - anchorTop;
    }
    if (switched) requestAnimationFrame(() => ol.setAttribute('aria-live', 'polite'));
    this.paneKey = pane.key;
    this.version = pane.version;
  }
}
