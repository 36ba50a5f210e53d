// ESLint for our own JavaScript (`npm run lint`, run by `make lint`). static/js/*.js are
// plain browser scripts, each an IIFE loaded by a <script> tag: no modules, no bundler. They
// share what they must through objects on `window` (window.labelPage, window.pageRequests),
// so a name that is neither declared nor a browser global is a mistake. htmx is a library
// they use by its global name; wavesurfer.js's is read as window.WaveSurfer.
import js from "@eslint/js";
import { defineConfig, globalIgnores } from "eslint/config";
import globals from "globals";

export default defineConfig([
  globalIgnores([".venv/", ".local/", "static/vendor/", "staticfiles/", "bench/out/"]),
  js.configs.recommended,
  {
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: {
      eqeqeq: "error",
      "no-var": "error",
      "prefer-const": "error",
      "no-unused-vars": ["error", { caughtErrors: "all" }],
    },
  },
  {
    files: ["static/js/**/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "script",
      globals: { ...globals.browser, htmx: "readonly" },
    },
    rules: {
      // A top-level declaration in a script is a global shared by every page script.
      "no-implicit-globals": "error",
      strict: ["error", "function"],
    },
  },
  {
    files: ["**/*.mjs"],
    languageOptions: { sourceType: "module", globals: globals.node },
  },
]);
