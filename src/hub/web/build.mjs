// Copies the pinned Chart.js UMD bundle (already minified) and its licence into vendor/.
// vendor/ is committed, so building the C++ binary needs neither npm nor the network; run
// `npm ci && npm run build` here only to change the Chart.js version (package.json pins it).
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync('node_modules/chart.js/package.json', 'utf8'));
mkdirSync('vendor', { recursive: true });
copyFileSync('node_modules/chart.js/dist/chart.umd.js', 'vendor/chart.umd.min.js');
copyFileSync('node_modules/chart.js/LICENSE.md', 'vendor/chart.js.LICENSE.md');
console.log(`vendor/chart.umd.min.js: Chart.js ${pkg.version}`);
