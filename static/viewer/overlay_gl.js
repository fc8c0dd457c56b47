/**
 * WebGL2 renderer of the viewport records: cells as gl.POINTS (discs; HER2 grades as
 * rings), graph edges as gl.LINES (one instance per 20-byte record, the two ends picked
 * by gl_VertexID). The records' ArrayBuffer is uploaded as is (no copy, no repacking);
 * the image -> screen transform (pan, zoom, rotation) is one uniform, so a frame costs a
 * uniform update and a draw call per layer, whatever the pan.
 */

const CELL_VS = `#version 300 es
in vec2 a_pos;
in uint a_packed;
uniform mat3 u_m;
uniform vec4 u_colors[16];
uniform float u_size;
uniform float u_opacity;
uniform int u_mode;        // 0 cell classes, 1 HER2 grade (rings)
uniform int u_highlight;   // 1: dim what is not in the masks
uniform uint u_classMask;
uniform uint u_her2Mask;
uniform uint u_classMask2;
uniform uint u_her2Mask2;
uniform uint u_hover;
out vec4 v_color;
flat out int v_hover;
bool selected(uint cls, uint h, uint classMask, uint her2Mask) {
  return ((classMask >> cls) & 1u) == 1u && (her2Mask == 0u || (h < 15u && ((her2Mask >> h) & 1u) == 1u));
}
void main() {
  uint cls = a_packed & 15u;
  uint h = (a_packed >> 4) & 15u;
  uint id = a_packed >> 8;
  vec4 c = u_colors[u_mode == 1 ? h : cls];
  float alpha = c.a * u_opacity;
  float size = u_size;
  if (u_mode == 1 && h == 15u) alpha = 0.0;
  if (u_highlight == 1) {
    bool hit = selected(cls, h, u_classMask, u_her2Mask) || selected(cls, h, u_classMask2, u_her2Mask2);
    if (hit && c.a > 0.0) { alpha = max(u_opacity, 0.9); size *= 1.4; } else { alpha *= 0.12; }
  }
  v_hover = (id == u_hover && u_hover != 0u) ? 1 : 0;
  if (v_hover == 1) { size = max(size * 1.8, 10.0); alpha = max(alpha, 0.95); }
  gl_Position = vec4((u_m * vec3(a_pos, 1.0)).xy, 0.0, 1.0);
  gl_PointSize = alpha > 0.003 ? size : 0.0;
  v_color = vec4(c.rgb, alpha);
}`;

const CELL_FS = `#version 300 es
precision highp float;
precision highp int;
in vec4 v_color;
flat in int v_hover;
uniform int u_mode;
out vec4 outColor;
void main() {
  vec2 p = gl_PointCoord * 2.0 - 1.0;
  float r = dot(p, p);
  if (r > 1.0) discard;
  if (v_hover == 1 && r > 0.62) { outColor = vec4(1.0, 1.0, 1.0, 1.0); return; }
  if (u_mode == 1) {
    if (r < 0.42) discard;                     // membrane ring
    outColor = v_color;
    return;
  }
  vec3 rgb = r > 0.72 ? v_color.rgb * 0.55 : v_color.rgb;   // darker rim: touching nuclei stay apart
  outColor = vec4(rgb, v_color.a);
}`;

const EDGE_VS = `#version 300 es
in vec2 a_p1;
in vec2 a_p2;
in uint a_code;
uniform mat3 u_m;
uniform vec4 u_colors[16];
uniform float u_opacity;
uniform int u_highlight;
uniform uint u_pairMask;
out vec4 v_color;
void main() {
  vec2 p = gl_VertexID == 0 ? a_p1 : a_p2;
  vec4 c = u_colors[a_code & 15u];
  float alpha = c.a * u_opacity;
  if (u_highlight == 1) {
    if (((u_pairMask >> (a_code & 31u)) & 1u) == 1u && c.a > 0.0) alpha = max(u_opacity, 0.95); else alpha *= 0.1;
  }
  gl_Position = vec4((u_m * vec3(p, 1.0)).xy, 0.0, 1.0);
  v_color = vec4(c.rgb, alpha);
}`;

const EDGE_FS = `#version 300 es
precision mediump float;
in vec4 v_color;
out vec4 outColor;
void main() { if (v_color.a < 0.003) discard; outColor = v_color; }`;

// Nucleus outlines: one instance per contour edge (28-byte segment, overlay_data.parseContours).
// Pass 0 fills the nucleus (a fan from its origin: 3 vertices), pass 1 strokes the edge as a
// screen-space quad of u_width px (6 vertices); HER2 grades (u_mode 1) are drawn u_ring px
// outside the nucleus, where the membrane is.
const CONTOUR_VS = `#version 300 es
in vec2 a_p1;
in vec2 a_p2;
in vec2 a_o;
in uint a_packed;
uniform mat3 u_m;
uniform vec2 u_half;       // half the canvas, CSS px
uniform vec4 u_colors[16];
uniform float u_opacity;
uniform float u_fill;      // fill alpha factor (0: outlines only)
uniform float u_width;     // outline width, CSS px
uniform float u_ring;      // outward offset, CSS px
uniform int u_pass;        // 0 fill, 1 outline
uniform int u_mode;        // 0 cell classes, 1 HER2 grade
uniform int u_highlight;
uniform uint u_classMask;
uniform uint u_her2Mask;
uniform uint u_classMask2;
uniform uint u_her2Mask2;
uniform uint u_hover;
out vec4 v_color;
bool selected(uint cls, uint h, uint classMask, uint her2Mask) {
  return ((classMask >> cls) & 1u) == 1u && (her2Mask == 0u || (h < 15u && ((her2Mask >> h) & 1u) == 1u));
}
vec2 px(vec2 p) { return (u_m * vec3(p, 1.0)).xy * u_half; }
void main() {
  uint cls = a_packed & 15u;
  uint h = (a_packed >> 4) & 15u;
  uint id = a_packed >> 8;
  vec4 c = u_colors[u_mode == 1 ? h : cls];
  float alpha = c.a * u_opacity;
  float width = u_width;
  if (u_mode == 1 && h == 15u) alpha = 0.0;
  if (u_highlight == 1) {
    bool hit = selected(cls, h, u_classMask, u_her2Mask) || selected(cls, h, u_classMask2, u_her2Mask2);
    if (hit && c.a > 0.0) { alpha = max(u_opacity, 0.95); width *= 1.6; } else { alpha *= 0.15; }
  }
  vec3 rgb = c.rgb;
  if (id == u_hover && u_hover != 0u && alpha > 0.0) { rgb = vec3(1.0); alpha = 1.0; width = max(width * 1.8, 3.0); }
  vec2 o = px(a_o);
  vec2 p1 = px(a_p1);
  vec2 p2 = px(a_p2);
  if (u_ring > 0.0) {
    p1 += normalize(p1 - o + vec2(1e-4)) * u_ring;
    p2 += normalize(p2 - o + vec2(1e-4)) * u_ring;
  }
  vec2 pos;
  int v = gl_VertexID;
  if (u_pass == 0) {
    pos = v == 0 ? o : (v == 1 ? p1 : p2);
    alpha *= u_fill;
  } else {
    // quad corners: (t, side) = (0,-1) (1,-1) (0,1) (0,1) (1,-1) (1,1)
    float t = (v == 1 || v == 4 || v == 5) ? 1.0 : 0.0;
    float side = (v >= 2 && v != 4) ? 1.0 : -1.0;
    vec2 d = p2 - p1;
    float len = length(d);
    vec2 dir = len > 1e-4 ? d / len : vec2(1.0, 0.0);
    vec2 n = vec2(-dir.y, dir.x);
    pos = mix(p1, p2, t) + n * side * width * 0.5 + dir * (t * 2.0 - 1.0) * width * 0.5;
  }
  gl_Position = vec4(pos / u_half, 0.0, 1.0);
  v_color = vec4(rgb, alpha);
}`;

function compile(gl, vsSource, fsSource) {
  const program = gl.createProgram();
  for (const [type, source] of [[gl.VERTEX_SHADER, vsSource], [gl.FRAGMENT_SHADER, fsSource]]) {
    const shader = gl.createShader(type);
    gl.shaderSource(shader, source);
    gl.compileShader(shader);
    if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(shader));
    gl.attachShader(program, shader);
  }
  gl.linkProgram(program);
  if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(program));
  const uniforms = {};
  const n = gl.getProgramParameter(program, gl.ACTIVE_UNIFORMS);
  for (let i = 0; i < n; i += 1) {
    const info = gl.getActiveUniform(program, i);
    const name = info.name.replace(/\[0\]$/, '');
    uniforms[name] = gl.getUniformLocation(program, info.name);
  }
  return { program, uniforms, attrib: (name) => gl.getAttribLocation(program, name) };
}

export class OverlayRenderer {
  /** Throws when WebGL2 is not available (the caller then keeps the PNG tiles). */
  constructor(canvas) {
    this.canvas = canvas;
    const gl = canvas.getContext('webgl2', { premultipliedAlpha: false, antialias: false, alpha: true, powerPreference: 'high-performance' });
    if (!gl) throw new Error('WebGL2 is not available');
    this.gl = gl;
    this.cellProgram = compile(gl, CELL_VS, CELL_FS);
    this.edgeProgram = compile(gl, EDGE_VS, EDGE_FS);
    this.contourProgram = compile(gl, CONTOUR_VS, EDGE_FS);
    this.batches = new Map(); // layer name -> {kind, vao, buffer, count}
  }

  /** Upload records for a layer (replacing the previous ones). kind: 'cells' | 'her2' | 'edges' | 'contours'. */
  setRecords(name, kind, buffer, count) {
    const { gl } = this;
    this.drop(name);
    if (!count) { this.batches.set(name, { kind, count: 0 }); return; }
    const vao = gl.createVertexArray();
    gl.bindVertexArray(vao);
    const vbo = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, vbo);
    gl.bufferData(gl.ARRAY_BUFFER, buffer, gl.STATIC_DRAW);
    if (kind === 'contours') {
      const p = this.contourProgram;
      const attrs = [['a_p1', 0], ['a_p2', 8], ['a_o', 16]];
      for (const [name, offset] of attrs) {
        const loc = p.attrib(name);
        gl.enableVertexAttribArray(loc); gl.vertexAttribPointer(loc, 2, gl.FLOAT, false, 28, offset); gl.vertexAttribDivisor(loc, 1);
      }
      const packed = p.attrib('a_packed');
      gl.enableVertexAttribArray(packed); gl.vertexAttribIPointer(packed, 1, gl.UNSIGNED_INT, 28, 24); gl.vertexAttribDivisor(packed, 1);
    } else if (kind === 'edges') {
      const p = this.edgeProgram;
      const p1 = p.attrib('a_p1'); const p2 = p.attrib('a_p2'); const code = p.attrib('a_code');
      gl.enableVertexAttribArray(p1); gl.vertexAttribPointer(p1, 2, gl.FLOAT, false, 20, 0); gl.vertexAttribDivisor(p1, 1);
      gl.enableVertexAttribArray(p2); gl.vertexAttribPointer(p2, 2, gl.FLOAT, false, 20, 8); gl.vertexAttribDivisor(p2, 1);
      gl.enableVertexAttribArray(code); gl.vertexAttribIPointer(code, 1, gl.UNSIGNED_INT, 20, 16); gl.vertexAttribDivisor(code, 1);
    } else {
      const p = this.cellProgram;
      const pos = p.attrib('a_pos'); const packed = p.attrib('a_packed');
      gl.enableVertexAttribArray(pos); gl.vertexAttribPointer(pos, 2, gl.FLOAT, false, 12, 0);
      gl.enableVertexAttribArray(packed); gl.vertexAttribIPointer(packed, 1, gl.UNSIGNED_INT, 12, 8);
    }
    gl.bindVertexArray(null);
    this.batches.set(name, { kind, vao, vbo, count });
  }

  drop(name) {
    const batch = this.batches.get(name);
    if (!batch) return;
    if (batch.vao) { this.gl.deleteVertexArray(batch.vao); this.gl.deleteBuffer(batch.vbo); }
    this.batches.delete(name);
  }

  has(name) { return this.batches.has(name); }

  _resize() {
    const { canvas } = this;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
    const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    return { cssWidth: canvas.clientWidth || 1, cssHeight: canvas.clientHeight || 1 };
  }

  /**
   * Draw. transform: {a, b, c, d, e, f}: element x = a*x + c*y + e, y = b*x + d*y + f
   * (level-0 px -> CSS px of the canvas). draws: [{name, palette (Float32Array 64),
   * opacity, pointSize, highlight: null | {classMask, her2Mask, partnerClassMask, partnerHer2Mask,
   * pairMask}, hoverId}]
   * in drawing order.
   */
  draw(transform, draws) {
    const { gl } = this;
    const { cssWidth, cssHeight } = this._resize();
    gl.viewport(0, 0, this.canvas.width, this.canvas.height);
    gl.clearColor(0, 0, 0, 0);
    gl.clear(gl.COLOR_BUFFER_BIT);
    if (!draws.length) return;
    gl.enable(gl.BLEND);
    gl.blendFuncSeparate(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA, gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
    const sx = 2 / cssWidth; const sy = -2 / cssHeight;
    const { a, b, c, d, e, f } = transform;
    // column-major mat3: clip = S * (A p + t) - (1, -1)
    const m = new Float32Array([sx * a, sy * b, 0, sx * c, sy * d, 0, sx * e - 1, sy * f + 1, 1]);
    for (const item of draws) {
      const batch = this.batches.get(item.name);
      if (!batch || !batch.count) continue;
      const highlight = item.highlight;
      if (batch.kind === 'contours') {
        const p = this.contourProgram;
        gl.useProgram(p.program);
        gl.uniformMatrix3fv(p.uniforms.u_m, false, m);
        gl.uniform2f(p.uniforms.u_half, cssWidth / 2, cssHeight / 2);
        gl.uniform4fv(p.uniforms.u_colors, item.palette);
        gl.uniform1f(p.uniforms.u_opacity, item.opacity);
        gl.uniform1f(p.uniforms.u_fill, item.fill || 0);
        gl.uniform1f(p.uniforms.u_width, item.lineWidth || 1.5);
        gl.uniform1f(p.uniforms.u_ring, item.ring || 0);
        gl.uniform1i(p.uniforms.u_mode, item.mode === 'her2' ? 1 : 0);
        gl.uniform1i(p.uniforms.u_highlight, highlight ? 1 : 0);
        gl.uniform1ui(p.uniforms.u_classMask, highlight ? highlight.classMask >>> 0 : 0);
        gl.uniform1ui(p.uniforms.u_her2Mask, highlight ? highlight.her2Mask >>> 0 : 0);
        gl.uniform1ui(p.uniforms.u_classMask2, highlight ? (highlight.partnerClassMask || 0) >>> 0 : 0);
        gl.uniform1ui(p.uniforms.u_her2Mask2, highlight ? (highlight.partnerHer2Mask || 0) >>> 0 : 0);
        gl.uniform1ui(p.uniforms.u_hover, (item.hoverId || 0) >>> 0);
        gl.bindVertexArray(batch.vao);
        if (item.fill > 0) {
          gl.uniform1i(p.uniforms.u_pass, 0);
          gl.drawArraysInstanced(gl.TRIANGLES, 0, 3, batch.count);
        }
        gl.uniform1i(p.uniforms.u_pass, 1);
        gl.drawArraysInstanced(gl.TRIANGLES, 0, 6, batch.count);
      } else if (batch.kind === 'edges') {
        const p = this.edgeProgram;
        gl.useProgram(p.program);
        gl.uniformMatrix3fv(p.uniforms.u_m, false, m);
        gl.uniform4fv(p.uniforms.u_colors, item.palette);
        gl.uniform1f(p.uniforms.u_opacity, item.opacity);
        gl.uniform1i(p.uniforms.u_highlight, highlight ? 1 : 0);
        gl.uniform1ui(p.uniforms.u_pairMask, highlight ? highlight.pairMask >>> 0 : 0);
        gl.bindVertexArray(batch.vao);
        gl.drawArraysInstanced(gl.LINES, 0, 2, batch.count);
      } else {
        const p = this.cellProgram;
        gl.useProgram(p.program);
        gl.uniformMatrix3fv(p.uniforms.u_m, false, m);
        gl.uniform4fv(p.uniforms.u_colors, item.palette);
        gl.uniform1f(p.uniforms.u_size, item.pointSize * (window.devicePixelRatio || 1));
        gl.uniform1f(p.uniforms.u_opacity, item.opacity);
        gl.uniform1i(p.uniforms.u_mode, batch.kind === 'her2' ? 1 : 0);
        gl.uniform1i(p.uniforms.u_highlight, highlight ? 1 : 0);
        gl.uniform1ui(p.uniforms.u_classMask, highlight ? highlight.classMask >>> 0 : 0);
        gl.uniform1ui(p.uniforms.u_her2Mask, highlight ? highlight.her2Mask >>> 0 : 0);
        gl.uniform1ui(p.uniforms.u_classMask2, highlight ? (highlight.partnerClassMask || 0) >>> 0 : 0);
        gl.uniform1ui(p.uniforms.u_her2Mask2, highlight ? (highlight.partnerHer2Mask || 0) >>> 0 : 0);
        gl.uniform1ui(p.uniforms.u_hover, (item.hoverId || 0) >>> 0);
        gl.bindVertexArray(batch.vao);
        gl.drawArrays(gl.POINTS, 0, batch.count);
      }
    }
    gl.bindVertexArray(null);
  }
}
