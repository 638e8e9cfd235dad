// The message field: Enter sends, Up and Down recall typed lines, Tab
// completes nicknames (and slash commands at the start), as in the TUI.

import { SLASH_COMMANDS, fold } from './protocol.js';

const HISTORY_MAX = 200;

export class ComposerView {
  constructor(form, input, { onSend, candidates }) {
    this.input = input;
    this.history = [];
    this.walk = null;
    this.draft = '';
    this.completion = null;
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const line = input.value;
      if (line.trim() === '') return;
      const result = onSend(line);
      if (!result.secret) this.remember(line);
      if (result.clear) input.value = '';
      this.walk = null;
    });
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'ArrowUp' && !ev.shiftKey) {
        if (this.up()) ev.preventDefault();
      } else if (ev.key === 'ArrowDown' && !ev.shiftKey) {
        if (this.down()) ev.preventDefault();
      } else if (ev.key === 'Tab' && !ev.shiftKey && !ev.ctrlKey && !ev.altKey) {
        if (this.complete(candidates())) ev.preventDefault();
      }
      if (ev.key !== 'Tab') this.completion = null;
    });
  }

  remember(line) {
    if (this.history[this.history.length - 1] !== line) this.history.push(line);
    if (this.history.length > HISTORY_MAX) this.history.shift();
  }

  up() {
    if (this.history.length === 0) return false;
    if (this.walk === null) {
      this.draft = this.input.value;
      this.walk = this.history.length;
    }
    if (this.walk === 0) return true;
    this.walk -= 1;
    this.input.value = this.history[this.walk];
    return true;
  }

  down() {
    if (this.walk === null) return false;
    this.walk += 1;
    if (this.walk >= this.history.length) {
      this.walk = null;
      this.input.value = this.draft;
    } else {
      this.input.value = this.history[this.walk];
    }
    return true;
  }

  /** Completes the word before the cursor; Tab again cycles. */
  complete(nicks) {
    const input = this.input;
    let c = this.completion;
    if (!c || input.value !== c.result) {
      const cursor = input.selectionStart ?? input.value.length;
      const before = input.value.slice(0, cursor);
      const start = before.search(/\S*$/);
      const word = before.slice(start);
      if (word === '') return false;
      const slash = start === 0 && word.startsWith('/');
      const pool = slash ? SLASH_COMMANDS : nicks;
      const matches = pool.filter((n) => fold(n).startsWith(fold(word)));
      if (matches.length === 0) return false;
      c = { start, head: input.value.slice(0, start), tail: input.value.slice(cursor), matches, i: -1, slash };
    }
    c.i = (c.i + 1) % c.matches.length;
    const suffix = c.slash ? ' ' : c.start === 0 ? ': ' : ' ';
    const word = c.matches[c.i] + suffix;
    c.result = c.head + word + c.tail.replace(/^ /, '');
    input.value = c.result;
    const at = c.head.length + word.length;
    input.setSelectionRange(at, at);
    this.completion = c;
    return true;
  }
}
