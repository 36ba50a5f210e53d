// Copies the front-end libraries we serve from node_modules into static/vendor/.
// wavesurfer.js: its UMD build, which defines the global `WaveSurfer` for our plain scripts.
import { copyFileSync, mkdirSync } from "node:fs";

const files = [
  ["node_modules/htmx.org/dist/htmx.min.js", "static/vendor/htmx.min.js"],
  ["node_modules/wavesurfer.js/dist/wavesurfer.min.js", "static/vendor/wavesurfer.min.js"],
];
mkdirSync("static/vendor", { recursive: true });
for (const [from, to] of files) {
  copyFileSync(from, to);
  console.log(`${from} -> ${to}`);
}
