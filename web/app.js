// Placeholder: the web client's script.
document.querySelector('[data-testid="status"]').textContent = 'loading';
