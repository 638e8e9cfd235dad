// Placeholder: the service worker that caches the page shell.
self.addEventListener('install', () => self.skipWaiting());
