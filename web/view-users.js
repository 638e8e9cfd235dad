// Who is in the shown pane; a click on someone else opens a private pane.

export class UsersView {
  constructor(ul, { onPick }) {
    this.ul = ul;
    this.onPick = onPick;
    this.last = '';
  }

  render(state) {
    const pane = state.shown;
    const key = `${pane.key}\n${state.nick}\n${pane.users.join(' ')}`;
    if (key === this.last) return;
    this.last = key;
    const items = pane.users.map((nick) => {
      const li = document.createElement('li');
      li.dataset.testid = 'user';
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = nick;
      if (state.isMe(nick)) {
        b.disabled = true;
        b.setAttribute('aria-label', `${nick} (you)`);
      } else {
        b.setAttribute('aria-label', `Talk privately with ${nick}`);
        b.addEventListener('click', () => this.onPick(nick));
      }
      li.append(b);
      return li;
    });
    this.ul.replaceChildren(...items);
  }
}
