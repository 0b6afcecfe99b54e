import type { Plugin } from "vite";
import { defineConfig } from "vitest/config";

/** Inline the script and styles into index.html, so the built page also works opened straight
 * from disk (file://, where browsers refuse module scripts), e.g. to view exported graphs. */
function singleFile(): Plugin {
  return {
    name: "locattr-single-file",
    enforce: "post",
    generateBundle(_options, bundle) {
      const page = bundle["index.html"];
      if (!page || page.type !== "asset" || typeof page.source !== "string") return;
      let html = page.source;
      for (const [name, item] of Object.entries(bundle)) {
        if (item.type === "chunk") {
          const tag = new RegExp(`<script type="module" crossorigin src="[^"]*${item.fileName}"></script>\\s*`);
          if (!tag.test(html)) throw new Error(`index.html does not load ${item.fileName}`);
          const code = item.code.replace(/<\/script/gi, "<\\/script");
          html = html.replace(tag, "").replace("</body>", () => `<script>(() => {"use strict";\n${code}\n})();</script>\n</body>`);
          delete bundle[name];
        } else if (name.endsWith(".css") && typeof item.source === "string") {
          const tag = new RegExp(`<link rel="stylesheet" crossorigin href="[^"]*${item.fileName}">`);
          if (!tag.test(html)) throw new Error(`index.html does not load ${item.fileName}`);
          const css = item.source;
          html = html.replace(tag, () => `<style>\n${css}</style>`);
          delete bundle[name];
        }
      }
      page.source = html;
    },
  };
}

export default defineConfig({
  base: "./",
  plugins: [singleFile()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    modulePreload: { polyfill: false },
    assetsInlineLimit: 100_000,
  },
  test: { include: ["src/**/*.test.ts"], environment: "node" },
  server: { proxy: { "/api": "http://127.0.0.1:8765" } },
});
