// tests/browser/page_check.js - opens heapwatch report pages in Debian's
// headless Chromium (through playwright-core) and prints what it saw, one
// JSON object per page, for tests/integration/report_page.sh to judge.
//
// usage: node page_check.js MODULES_DIR SHOTS_DIR JOB...
//   MODULES_DIR  the node_modules that hold playwright-core ($BUILD/browser/node_modules)
//   SHOTS_DIR    where screenshots go
//   JOB          leak:FILE:FUNCTION   a run with a leak: the flame graphs,
//                                     zoom, search, tables and a screenshot
//                                     (the growth graphs' frame names and
//                                     the page's scripts are listed too)
//                many:FILE            a run of many processes: the table,
//                                     and one section opened from it
//
// Every job reports the console errors, page errors and failed or
// non-local requests it saw. It only observes: the checks are the shell's.
'use strict';
const path = require('path');
const fs = require('fs');
const zlib = require('zlib');

const [modules, shots, ...jobs] = process.argv.slice(2);
const { chromium } = require(path.join(path.resolve(modules), 'playwright-core'));

// pngStats: distinct colours and the share of the commonest one in a PNG
// (8-bit RGB or RGBA, not interlaced: what Chromium writes).
function pngStats(buf) {
  let pos = 8, width = 0, height = 0, depth = 0, type = 0;
  const idat = [];
  while (pos < buf.length) {
    const len = buf.readUInt32BE(pos), kind = buf.toString('latin1', pos + 4, pos + 8);
    const data = buf.subarray(pos + 8, pos + 8 + len);
    if (kind === 'IHDR') { width = data.readUInt32BE(0); height = data.readUInt32BE(4); depth = data[8]; type = data[9]; }
    if (kind === 'IDAT') idat.push(data);
    pos += 12 + len;
  }
  if (depth !== 8 || (type !== 2 && type !== 6)) throw new Error(`PNG depth ${depth} type ${type} not handled`);
  const bpp = type === 6 ? 4 : 3, stride = width * bpp, raw = zlib.inflateSync(Buffer.concat(idat));
  const out = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)], src = y * (stride + 1) + 1, dst = y * stride;
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? out[dst + x - bpp] : 0, b = y ? out[dst - stride + x] : 0;
      const c = x >= bpp && y ? out[dst - stride + x - bpp] : 0, v = raw[src + x];
      let p = 0;
      if (f === 1) p = a; else if (f === 2) p = b; else if (f === 3) p = (a + b) >> 1;
      else if (f === 4) { const q = a + b - c, pa = Math.abs(q - a), pb = Math.abs(q - b), pc = Math.abs(q - c);
        p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c; }
      out[dst + x] = (v + p) & 255;
    }
  }
  const counts = new Map();
  for (let i = 0; i < out.length; i += bpp) {
    const k = out[i] << 16 | out[i + 1] << 8 | out[i + 2];
    counts.set(k, (counts.get(k) || 0) + 1);
  }
  return { width, height, colours: counts.size, commonest: Math.max(...counts.values()) / (width * height) };
}

// watch: collects what must stay empty while a page is used.
function watch(page) {
  const seen = { consoleErrors: [], pageErrors: [], failedRequests: [], remoteRequests: [] };
  page.on('console', (m) => { if (m.type() === 'error') seen.consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => seen.pageErrors.push(String(e)));
  page.on('requestfailed', (r) => seen.failedRequests.push(r.url()));
  page.on('request', (r) => { if (!/^(file|data|about):/.test(r.url())) seen.remoteRequests.push(r.url()); });
  return seen;
}

async function leakJob(browser, file, fn) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const seen = watch(page);
  await page.goto('file://' + path.resolve(file), { waitUntil: 'load' });
  const r = { job: 'leak', file, fn, ...seen };
  const g = `div.flame[data-kind="inuse"]`;
  const frame = `${g} svg g.frame[data-name="${fn}"]`;
  r.kinds = await page.$$eval('div.flame', (ds) => ds.map((d) => d.getAttribute('data-kind')));
  r.builtInuse = await page.$eval(g, (d) => d.getAttribute('data-built')).catch(() => null);
  r.inuseHasFn = (await page.$$(frame)).length;
  r.peakNames = await page.$$eval('div.flame[data-kind="peak"] svg g.frame', (fs) => fs.map((f) => f.getAttribute('data-name'))).catch(() => []);
  r.growthHasFn = (await page.$$(`div.flame[data-kind="growth-1"] svg g.frame[data-name="${fn}"]`)).length;
  r.growthNames = await page.$$eval('div.flame[data-kind^="growth-"] svg g.frame', (fs) => fs.map((f) => f.getAttribute('data-name')));
  r.scripts = await page.$$eval('script', (ss) => ss.length);
  r.sections = await page.$$eval('section.proc', (ss) => ss.length);
  r.svgWidth = await page.$eval(`${g} svg`, (s) => s.viewBox.baseVal.width).catch(() => null);
  r.widthBefore = await page.$eval(`${frame} rect`, (e) => +e.getAttribute('width')).catch(() => null);
  if (r.inuseHasFn) {
    await page.click(`${frame} rect`);
    r.widthAfter = await page.$eval(`${frame} rect`, (e) => +e.getAttribute('width'));
    r.renderedRatio = await page.$eval(`${frame} rect`, (e) => e.getBoundingClientRect().width / e.ownerSVGElement.getBoundingClientRect().width);
    await page.hover(`${frame} rect`);
    r.hoverInfo = await page.$eval(`${g} .flame-info`, (e) => e.textContent);
    await page.click(`${g} svg g.frame.root rect`);
    r.widthReset = await page.$eval(`${frame} rect`, (e) => +e.getAttribute('width'));
  }
  await page.fill(`${g} input.flame-search`, fn);
  r.matches = await page.$$eval(`${g} svg g.frame.match`, (fs) => fs.map((f) => f.getAttribute('data-name')));
  r.found = await page.$eval(`${g} .flame-found`, (e) => e.textContent);
  r.leaksTable = await page.$eval('table.leaks', (t) => t.innerText).catch(() => '');
  r.topTable = await page.$eval('table.top', (t) => t.innerText).catch(() => '');
  r.procRows = await page.$$eval('table#procs tbody tr', (rs) => rs.length);
  r.procCommands = await page.$$eval('table#procs tbody tr td:first-child', (ts) => ts.map((t) => t.textContent));
  r.procClasses = await page.$$eval('table#procs tbody tr', (rs) => rs.map((t) => t.className));
  r.openSections = await page.$$eval('section.proc details.proc[open]', (ds) => ds.length);
  r.title = await page.title();
  const shot = path.join(shots, path.basename(path.dirname(path.resolve(file))) + '.png');
  await page.screenshot({ path: shot, fullPage: false });
  r.screenshot = { file: shot, ...pngStats(fs.readFileSync(shot)) };
  await page.close();
  return r;
}

async function manyJob(browser, file) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const seen = watch(page);
  const t = Date.now();
  await page.goto('file://' + path.resolve(file), { waitUntil: 'load' });
  const r = { job: 'many', file, loadMs: Date.now() - t, ...seen };
  r.procRows = await page.$$eval('table#procs tbody tr', (rs) => rs.length);
  r.sections = await page.$$eval('section.proc details.proc', (ds) => ds.length);
  r.openSections = await page.$$eval('section.proc details.proc[open]', (ds) => ds.length);
  r.builtFlames = await page.$$eval('div.flame[data-built]', (ds) => ds.length);
  const last = 'table#procs tbody tr:last-child a';
  const href = await page.$eval(last, (a) => a.getAttribute('href'));
  await page.click(last);
  r.clickedOpen = await page.$eval(`${href} details.proc`, (d) => d.open);
  r.clickedBuilt = await page.$eval(`${href} details.proc`, (d) => d.getAttribute('data-built'));
  r.clickedFlames = await page.$$eval(`${href} div.flame[data-built]`, (ds) => ds.length);
  await page.close();
  return r;
}

(async () => {
  const args = process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [];
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args });
  try {
    for (const job of jobs) {
      const [kind, file, fn] = job.split(':');
      const r = kind === 'leak' ? await leakJob(browser, file, fn) : await manyJob(browser, file);
      console.log(JSON.stringify(r));
    }
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error('page_check: ' + (e && e.stack || e));
  process.exit(1);
});
