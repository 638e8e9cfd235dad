// The nickname screen: a nickname (remembered for next time), and a
// password when the nickname is registered or the user says it is theirs.

const SAVED_NICK = 'natter.nick';

export function savedNick() {
  try {
    return localStorage.getItem(SAVED_NICK) ?? '';
  } catch {
    return '';
  }
}

export function saveNick(nick) {
  try {
    localStorage.setItem(SAVED_NICK, nick);
  } catch {
    // Private browsing may refuse storage; the nickname is then asked again.
  }
}

export class LoginView {
  constructor(root, { onSubmit }) {
    this.root = root;
    this.form = root.querySelector('#login-form');
    this.nick = root.querySelector('#nick-input');
    this.password = root.querySelector('#password-input');
    this.passwordRow = root.querySelector('#password-row');
    this.message = root.querySelector('#login-message');
    this.status = root.querySelector('#login-status');
    this.toggle = root.querySelector('#login-toggle');
    this.nick.value = savedNick();
    this.lastPrompt = null;
    this.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const nick = this.nick.value.trim();
      if (!nick) return;
      const password = this.passwordRow.hidden ? '' : this.password.value;
      this.password.value = '';
      onSubmit(nick, password);
    });
    this.toggle.addEventListener('click', () => this.showPassword(this.passwordRow.hidden));
  }

  showPassword(on) {
    this.passwordRow.hidden = !on;
    this.toggle.textContent = on ? 'Join as a guest instead' : 'I have an account';
    if (on) this.password.focus();
  }

  render(state) {
    const { prompt } = state;
    const shown = prompt.shown;
    const wasHidden = this.root.hidden;
    this.root.hidden = !shown;
    document.getElementById('app').inert = shown;
    if (!shown) return;
    if (prompt !== this.lastPrompt) {
      this.lastPrompt = prompt;
      this.message.textContent = prompt.message;
      if (prompt.suggestion) this.nick.value = prompt.suggestion;
      if (prompt.password) {
        this.showPassword(true);
        if (prompt.guest) this.message.textContent = `${prompt.message} (or join as ${prompt.guest})`;
      } else if (wasHidden || prompt.message) {
        this.nick.focus();
        this.nick.select();
      }
    }
    const words = {
      connecting: 'Connecting to the server…',
      offline: `Not connected (${state.connDetail}).`,
      closed: 'Disconnected.',
    };
    this.status.textContent = words[state.conn] ?? '';
  }
}
