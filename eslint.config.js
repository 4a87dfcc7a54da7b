// Lint: typescript-eslint's type-checked rules plus the project's layering rules.
// Imports go one way, lib <- engine <- sync <- cluster <- node, and only through a layer's
// index.ts; engine, sync and cluster never touch real I/O, timers, Date or Math.random (they get
// Disk, Clock, Network and Random injected). src/lib/lint-rules.test.ts proves each rule fires.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const LAYERS = ['lib', 'engine', 'sync', 'cluster', 'node'];
const CORE = ['engine', 'sync', 'cluster'];

const REAL_IO_MODULES = ['fs', 'fs/promises', 'net', 'http', 'https', 'http2', 'dgram', 'child_process',
  'timers', 'timers/promises', 'worker_threads', 'cluster', 'os', 'tls', 'dns'];

function layeringFor(layer) {
  const above = LAYERS.slice(LAYERS.indexOf(layer) + 1);
  const patterns = [
    {
      regex: '^(\\.\\./)+(lib|engine|sync|cluster|node)/(?!index\\.js$).+',
      message: 'Import another layer only through its index.js.',
    },
  ];
  if (above.length > 0) {
    patterns.push({
      regex: `^(\\.\\./)+(${above.join('|')})(/|$)`,
      message: `src/${layer} may not import ${above.join(', ')}: imports go lib <- engine <- sync <- cluster <- node.`,
    });
  }
  return patterns;
}

const coreIo = {
  paths: [
    ...REAL_IO_MODULES.flatMap((m) => [m, `node:${m}`]).map((name) => ({
      name,
      message: 'Real I/O is not allowed in engine, sync and cluster: use the injected Disk, Clock, Network or Random.',
    })),
    { name: 'ws', message: 'Sockets belong to src/node.' },
  ],
};

// Tests beside the core may use real files (temp folders) but still respect the layer order.
const layerConfigs = LAYERS.flatMap((layer) => [
  {
    files: [`src/${layer}/**/*.ts`],
    rules: {
      'no-restricted-imports': ['error', { patterns: layeringFor(layer), ...(CORE.includes(layer) ? coreIo : {}) }],
    },
  },
  {
    files: [`src/${layer}/**/*.test.ts`],
    rules: { 'no-restricted-imports': ['error', { patterns: layeringFor(layer) }] },
  },
]);

const coreTime = {
  files: CORE.map((layer) => `src/${layer}/**/*.ts`),
  ignores: ['**/*.test.ts'],
  rules: {
    'no-restricted-globals': ['error',
      ...['Date', 'setTimeout', 'setInterval', 'setImmediate', 'clearTimeout', 'clearInterval', 'clearImmediate',
        'process', 'performance', 'queueMicrotask'].map((name) => ({
        name,
        message: 'Time and process state come through the injected Clock/Random in engine, sync and cluster.',
      })),
    ],
    'no-restricted-properties': ['error',
      { object: 'Math', property: 'random', message: 'Use the injected Random.' },
    ],
  },
};

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'bin/**', 'bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-empty': ['error', { allowEmptyCatch: false }],
      'eqeqeq': ['error', 'always'],
    },
  },
  {
    files: ['**/*.test.ts', '**/*.contract.ts', 'test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/require-await': 'off',
    },
  },
  ...layerConfigs,
  coreTime,
  {
    files: ['**/*.js', '**/*.lint-probe.ts'],
    ...tseslint.configs.disableTypeChecked,
  },
);
