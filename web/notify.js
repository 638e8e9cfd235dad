// Notifications for mentions and whispers while the page is hidden (only
// after the user allowed them), and the unread count in the tab title.

export function canNotify() {
  return typeof Notification !== 'undefined';
}

export async function askPermission() {
  if (!canNotify()) return 'unsupported';
  if (Notification.permission === 'default') return Notification.requestPermission();
  return Notification.permission;
}

/** Shows `alert` ({pane, nick, text, alert}) if the page is hidden and it is for us. */
export function notify(alert) {
  if (!alert.alert || !canNotify() || Notification.permission !== 'granted') return;
  if (document.visibilityState === 'visible') return;
  try {
    const n = new Notification(alert.pane.startsWith('#') ? `${alert.nick} in ${alert.pane}` : `${alert.nick} (private)`, {
      body: alert.text.slice(0, 200),
      tag: `natter-${alert.pane}`,
      icon: '/icon-192.png',
    });
    n.onclick = () => window.focus();
  } catch {
    // Some browsers only notify through a service worker; skip.
  }
}

export function setTitle(unread) {
  document.title = unread > 0 ? `(${unread}) natter` : 'natter';
}
