// natter's service worker: keeps the page shell so the app opens offline
// (and says it is offline). Network first, so a new version of the page
// arrives as soon as the server has it; the cache only answers when the
// network cannot. The WebSocket (/ws) and anything not in the shell are
// never touched.

const CACHE = 'natter-shell-v1';
const SHELL = [
  '/',
  '/app.js',
  '/protocol.js',
  '/state.js',
  '/connection.js',
  '/view-messages.js',
  '/view-rooms.js',
  '/view-users.js',
  '/view-login.js',
  '/view-composer.js',
  '/notify.js',
  '/style.css',
  '/manifest.webmanifest',
  '/icon.svg',
  '/icon-192.png',
  '/icon-512.png',
];

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  const path = request.mode === 'navigate' ? '/' : url.pathname;
  if (!SHELL.includes(path) || url.pathname === '/ws') return;
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(path, copy));
        }
        return response;
      })
      .catch(() => caches.match(path).then((hit) => hit ?? Response.error())),
  );
});
