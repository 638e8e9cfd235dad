// Draws web/icon-192.png and web/icon-512.png (the icon.svg design: a
// white speech bubble with three dots on blue) with node's zlib alone, so
// the icons can be made again without an image tool:
//   node tests/browser/make-icons.mjs
import { writeFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';

const BLUE = [0x1d, 0x4f, 0x91];
const WHITE = [0xff, 0xff, 0xff];

/** The colour at (x, y) in the 64×64 design, or null outside the rounded square. */
function shade(x, y) {
  const inRound = (x0, y0, x1, y1, r) => {
    const cx = Math.min(Math.max(x, x0 + r), x1 - r);
    const cy = Math.min(Math.max(y, y0 + r), y1 - r);
    return x >= x0 && x <= x1 && y >= y0 && y <= y1 && (x - cx) ** 2 + (y - cy) ** 2 <= r * r;
  };
  // Maskable icons are cropped by the launcher: fill the whole square.
  const dot = [23, 32, 41].some((cx) => (x - cx) ** 2 + (y - 31) ** 2 <= 9);
  const bubble = inRound(10, 18, 54, 44, 4);
  // The tail: a triangle from (20, 44) to (30, 44) down to (20, 52).
  const tail = y >= 44 && y <= 52 && x >= 20 && x <= 30 - (y - 44) * (10 / 8);
  if ((bubble && !dot) || tail) return WHITE;
  return BLUE;
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** A PNG of `size`×`size`, 4×4 supersampled. */
function png(size) {
  const raw = Buffer.alloc(size * (size * 3 + 1));
  const s = 64 / size;
  for (let y = 0; y < size; y += 1) {
    const row = y * (size * 3 + 1);
    raw[row] = 0;
    for (let x = 0; x < size; x += 1) {
      const acc = [0, 0, 0];
      for (let sy = 0; sy < 4; sy += 1) {
        for (let sx = 0; sx < 4; sx += 1) {
          const c = shade((x + (sx + 0.5) / 4) * s, (y + (sy + 0.5) / 4) * s);
          for (let i = 0; i < 3; i += 1) acc[i] += c[i];
        }
      }
      for (let i = 0; i < 3; i += 1) raw[row + 1 + x * 3 + i] = Math.round(acc[i] / 16);
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // truecolour
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

for (const size of [192, 512]) {
  const out = fileURLToPath(new URL(`../../web/icon-${size}.png`, import.meta.url));
  writeFileSync(out, png(size));
  console.log(`wrote ${out}`);
}
