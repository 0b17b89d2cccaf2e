// Test data without dependencies: small PNGs of drawn shapes and a zip (stored, CRC-32 from zlib).
import zlib from 'node:zlib';

function crc32(buf) {
  return zlib.crc32(buf) >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

/** An RGB PNG from a pixel function (x, y) => [r, g, b]. */
export function png(w, h, px) {
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    raw[y * (w * 3 + 1)] = 0;
    for (let x = 0; x < w; x++) raw.set(px(x, y), y * (w * 3 + 1) + 1 + x * 3);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

/** A zip (method 0, stored) of [name, bytes] pairs. */
export function zip(files) {
  const locals = [], centrals = [];
  let offset = 0;
  for (const [name, data] of files) {
    const n = Buffer.from(name);
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0); local.writeUInt16LE(20, 4); local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18); local.writeUInt32LE(data.length, 22); local.writeUInt16LE(n.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0); central.writeUInt16LE(20, 4); central.writeUInt16LE(20, 6); central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20); central.writeUInt32LE(data.length, 24); central.writeUInt16LE(n.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, n, data);
    centrals.push(central, n);
    offset += 30 + n.length + data.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(files.length, 8); end.writeUInt16LE(files.length, 10);
  end.writeUInt32LE(cd.length, 12); end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

/** train/<shape>/*.png and test/<shape>/*.png: circles, squares and stripes on noise. */
export function shapesZip(train = 24, test = 8) {
  let seed = 7;
  const rnd = (a, b) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return a + (seed % (b - a)); };
  const files = [];
  for (const [split, n] of [['train', train], ['test', test]]) {
    for (const shape of ['circle', 'square', 'stripe']) {
      for (let i = 0; i < n; i++) {
        const r = rnd(5, 9), cx = rnd(r + 1, 31 - r), cy = rnd(r + 1, 31 - r), bg = rnd(0, 60);
        const color = [rnd(150, 256), rnd(150, 256), rnd(150, 256)];
        files.push([`${split}/${shape}/${String(i).padStart(3, '0')}.png`, png(32, 32, (x, y) => {
          const dx = x - cx, dy = y - cy;
          const inside = shape === 'circle' ? dx * dx + dy * dy <= r * r : shape === 'square' ? Math.abs(dx) <= r && Math.abs(dy) <= r : Math.abs(dy) <= 1 && Math.abs(dx) <= r + 4;
          const g = bg + rnd(0, 30);
          return inside ? color : [g, g, g];
        })]);
      }
    }
  }
  return zip(files);
}
