import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// The Fastify app serves web/dist at /ecosystem; `npm run dev:web` proxies the API to a local `npm start`.
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/ecosystem/',
  plugins: [react()],
  // The layout worker imports ELK and our layout code: an ES module worker, bundled like the page.
  worker: { format: 'es' },
  build: { outDir: 'dist', emptyOutDir: true, chunkSizeWarningLimit: 1024, reportCompressedSize: false },
  server: { proxy: { '/api': 'http://127.0.0.1:8001' } },
});
