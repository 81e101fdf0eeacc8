// MathJax 2 settings, read before MathJax loads on every page. MathJax is served from the site itself
// (the jupyter-server-mathjax package), which ships the STIX-Web fonts only: asking for them stops
// MathJax from looking for its TeX fonts, which are not there.
// The Markdown pages' math comes from pymdownx.arithmatex as \( ... \) and \[ ... \]; the notebook
// pages add $ ... $ and $$ ... $$ in nbconvert's own configuration.
window.MathJax = {
  tex2jax: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true },
  TeX: { equationNumbers: { autoNumber: "AMS" } },
  // MathJax 2 measures fonts with a blank @font-face at about:blank, which Chromium refuses with a
  // console error; local() names a font that is simply absent, with the same effect and no request.
  "HTML-CSS": {
    availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null,
    styles: { "@font-face": { "font-family": "MathJax_Blank", src: "local('MathJax_Blank')" } },
  },
  // The hidden MathML copy for screen readers asks for MathJax's TeX fonts, which are not shipped.
  menuSettings: { assistiveMML: false },
  messageStyle: "none",
};
