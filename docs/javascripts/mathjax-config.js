// Pages written in Markdown carry arithmatex's \( \) and \[ \]; notebook cells carry
// plain $ and $$. MathJax skips <pre> and <code> by default, so code is left alone.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true
  }
};
