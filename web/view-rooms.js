// The list of panes: rooms, then private conversations, each a button
// with its unread count (mentions and whispers stand out).

export class RoomsView {
  constructor(ul, { onPick }) {
    this.ul = ul;
    this.onPick = onPick;
  }

  render(state) {
    const items = state.panes.map((pane) => {
      const li = document.createElement('li');
      li.className = pane.kind;
      const b = document.createElement('button');
      b.type = 'button';
      b.dataset.testid = 'room';
      b.dataset.name = pane.name;
      b.dataset.unread = String(pane.unread);
      b.classList.toggle('unread', pane.unread > 0);
      if (pane.key === state.shownKey) b.setAttribute('aria-current', 'true');
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = pane.name;
      b.append(name);
      if (pane.unread > 0) {
        const badge = document.createElement('span');
        badge.className = pane.alert ? 'badge alert' : 'badge';
        badge.textContent = String(pane.unread);
        badge.setAttribute('aria-label', `${pane.unread} unread${pane.alert ? ', for you' : ''}`);
        b.append(badge);
      }
      if (pane.kind === 'room' && !pane.joined && state.conn === 'online') b.title = 'Not joined';
      b.addEventListener('click', () => this.onPick(pane.key));
      li.append(b);
      return li;
    });
    this.ul.replaceChildren(...items);
  }
}
