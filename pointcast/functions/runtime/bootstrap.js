'use strict';
/**
 * pointcast's Node.js runtime bootstrap: a Lambda Runtime API client with no dependencies beyond Node itself.
 *
 * Workers run AWS's own client (npm aws-lambda-ric) where `pointcast functions install-node-ric` has built it
 * (node_ric.py); it needs a native build, so this runs where it is not installed. It speaks the same API
 * (2018-06-01) at AWS_LAMBDA_RUNTIME_API and does what AWS's client does (its dist/index.mjs is the reference):
 *
 *   - _HANDLER is "path/module.fn" (fn may be nested: "module.a.b"; ".." is refused); the module is loaded from
 *     LAMBDA_TASK_ROOT as named, as module.js by require() (or as an ES module under "type": "module"), then
 *     module.mjs, module.cjs, then by Node's resolution. It is loaded once per worker and reused (warm starts).
 *   - Init failures are posted to /init/error (Runtime.ImportModuleError, Runtime.HandlerNotFound,
 *     Runtime.MalformedHandlerName, Runtime.UserCodeSyntaxError, or the module's own error) and the process exits.
 *   - Loop: GET /invocation/next -> handler(event, context, callback) -> POST /response or /error. The first of
 *     callback, context.succeed/fail/done and a returned promise answers. Errors are posted as
 *     {errorType, errorMessage, trace}: an Error (or an object shaped like one) by its name, message and stack,
 *     any other value by its type and toString(); a rejection with null or undefined is the string "handled".
 *   - context: functionName, functionVersion, invokedFunctionArn, memoryLimitInMB, awsRequestId, logGroupName,
 *     logStreamName, clientContext, identity, getRemainingTimeInMillis(), callbackWaitsForEmptyEventLoop.
 *     A callback's result is posted once the event loop is empty while callbackWaitsForEmptyEventLoop is true
 *     (the default), at once otherwise; its error, an async handler's answer and context.done/succeed/fail's
 *     at once (work left pending then runs on in the warm worker, as after a freeze/thaw). If the event loop
 *     empties before the handler answers, the answer is null.
 *   - console.* lines are written as "<ISO time>\t<request id>\t<LEVEL>\t<message>" (console.fatal too), as on
 *     Lambda; levels below AWS_LAMBDA_LOG_LEVEL are not written.
 *   - An uncaught exception or unhandled rejection (Runtime.UnhandledPromiseRejection) fails the current
 *     invocation and ends the process; between invocations it only ends the process (the pool replaces it).
 */

const fs = require('fs');
const http = require('http');
const path = require('path');
const util = require('util');
const { pathToFileURL } = require('url');

const API = process.env.AWS_LAMBDA_RUNTIME_API || '127.0.0.1:9001';
const SEP = API.lastIndexOf(':');
const HOST = API.slice(0, SEP);
const PORT = Number(API.slice(SEP + 1));
const BASE = '/2018-06-01/runtime';
const TASK_ROOT = process.env.LAMBDA_TASK_ROOT || process.cwd();
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

let currentRequestId;
let initialized = false; // the handler is loaded: an error between invocations belongs to no invocation
let answerOnEmptyLoop; // set while a handler runs: what 'beforeExit' does

// -- the Runtime API ------------------------------------------------------------------------------------------

function call(method, urlPath, body, headers) {
  return new Promise((resolve, reject) => {
    const options = { host: HOST, port: PORT, method, path: BASE + urlPath, agent, headers: headers || {} };
    if (body !== undefined) {
      options.headers['Content-Type'] = 'application/json';
      options.headers['Content-Length'] = Buffer.byteLength(body);
    }
    const req = http.request(options, (res) => {
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

// Errors as AWS's client (aws-lambda-ric's Errors.js) reports them: an Error, or anything shaped like one, by its
// name, message and stack; any other value by its type and its toString().
function isErrorLike(obj) {
  return Boolean(
    obj && obj.name && obj.message && obj.stack &&
      typeof obj.name === 'string' && typeof obj.message === 'string' && typeof obj.stack === 'string',
  );
}

function errorDocument(err) {
  try {
    if (util.types.isNativeError(err) || isErrorLike(err)) {
      return { errorType: err.name, errorMessage: err.message, trace: err.stack.split('\n') };
    }
    return { errorType: typeof err, errorMessage: err.toString(), trace: [] };
  } catch (_) {
    return {
      errorType: 'handled',
      errorMessage:
        'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
    };
  }
}

// The log line's JSON for an error ("Invoke Error", "Uncaught Exception"), as AWS's client writes it.
function formatted(err) {
  const withProperties = (_key, value) => {
    if (!(value instanceof Error)) return value;
    const doc = Object.assign({ errorType: value.name, errorMessage: value.message, code: value.code }, value);
    if (typeof value.stack === 'string') doc.stack = value.stack.split('\n');
    return doc;
  };
  try {
    return '\t' + JSON.stringify(err, withProperties);
  } catch (_) {
    return '\t' + JSON.stringify(errorDocument(err));
  }
}

class UnhandledPromiseRejection extends Error {
  constructor(reason) {
    super(reason);
    this.name = 'Runtime.UnhandledPromiseRejection';
    this.reason = reason;
  }
}

function postError(urlPath, doc) {
  return call('POST', urlPath, JSON.stringify(doc), { 'Lambda-Runtime-Function-Error-Type': doc.errorType });
}

// -- logging --------------------------------------------------------------------------------------------------

// As AWS's client: each level under AWS_LAMBDA_LOG_LEVEL (the function's LoggingConfig) writes nothing.
const LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];

// LoggingConfig.LogFormat JSON (AWS_LAMBDA_LOG_FORMAT): each record one JSON object, as AWS's client writes them.
function errorFields(value) {
  return {
    errorType: (value && value.constructor && value.constructor.name) || 'UnknownError',
    errorMessage: value.message,
    stackTrace: typeof value.stack === 'string' ? value.stack.split('\n') : value.stack,
  };
}

function jsonRecord(time, level, args) {
  const record = { timestamp: time, level, requestId: currentRequestId };
  const replacer = (_, value) => (value instanceof Error ? Object.assign(errorFields(value), value) : value);
  if (args.length === 1) {
    record.message = args[0];
    try {
      return JSON.stringify(record, replacer);
    } catch (_) {
      record.message = util.format(record.message);
      return JSON.stringify(record);
    }
  }
  record.message = util.format(...args);
  const error = args.find((arg) => arg instanceof Error);
  if (error) {
    const fields = errorFields(error);
    Object.assign(record, fields, { stackTrace: typeof error.stack === 'string' ? fields.stackTrace : [] });
  }
  return JSON.stringify(record);
}

function patchConsole() {
  const least = Math.max(0, LEVELS.indexOf(String(process.env.AWS_LAMBDA_LOG_LEVEL || 'TRACE').toUpperCase()));
  const json = String(process.env.AWS_LAMBDA_LOG_FORMAT || '').toUpperCase() === 'JSON';
  const line = (level) => {
    if (LEVELS.indexOf(level) < least) return () => {};
    return (...args) => {
      const time = new Date().toISOString();
      if (json) {
        process.stdout.write(jsonRecord(time, level, args) + '\n');
        return;
      }
      process.stdout.write(`${time}\t${currentRequestId}\t${level}\t${util.format(...args)}\n`);
    };
  };
  console.trace = line('TRACE');
  console.debug = line('DEBUG');
  console.log = line('INFO');
  console.info = line('INFO');
  console.warn = line('WARN');
  console.error = line('ERROR');
  console.fatal = line('FATAL');
}

// -- loading the handler --------------------------------------------------------------------------------------

class InitError extends Error {
  constructor(errorType, message) {
    super(message);
    this.name = errorType;
  }
}

// Loading as AWS's client does (aws-lambda-ric's UserFunction.js): the module as named, then .js (by require, unless
// a package.json says "type": "module"), then .js as an ES module, .mjs, .cjs; then Node's own resolution.
function hasTypeModule(folder) {
  if (folder.endsWith('/node_modules')) return false;
  const manifest = path.join(folder, 'package.json');
  if (fs.existsSync(manifest)) {
    try {
      return JSON.parse(fs.readFileSync(manifest)).type === 'module';
    } catch (_) {
      return false;
    }
  }
  return folder === '/' ? false : hasTypeModule(path.resolve(folder, '..'));
}

async function loadModule(moduleRoot, moduleName) {
  const base = path.resolve(TASK_ROOT, moduleRoot, moduleName);
  const required = (ext) => (fs.existsSync(base + ext) ? require(base + ext) : undefined);
  const imported = async (ext) => (fs.existsSync(base + ext) ? await import(pathToFileURL(base + ext).href) : undefined);
  try {
    const bare = required('');
    if (bare) return bare;
    const typeModule = fs.existsSync(base + '.js') && hasTypeModule(path.dirname(base + '.js'));
    if (!typeModule) {
      const js = required('.js');
      if (js) return js;
    }
    const loaded = (typeModule && (await imported('.js'))) || (await imported('.mjs')) || required('.cjs');
    if (loaded) return loaded;
    return require(require.resolve(moduleName, { paths: [TASK_ROOT, moduleRoot] }));
  } catch (err) {
    if (err instanceof SyntaxError) throw new InitError('Runtime.UserCodeSyntaxError', String(err));
    if (err && err.code === 'MODULE_NOT_FOUND') throw new InitError('Runtime.ImportModuleError', String(err));
    throw err;
  }
}

async function loadHandler(handlerString) {
  if (handlerString.includes('..')) {
    throw new InitError(
      'Runtime.MalformedHandlerName',
      `'${handlerString}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`,
    );
  }
  const file = path.basename(handlerString);
  const moduleRoot = handlerString.substring(0, handlerString.indexOf(file));
  const match = /^([^.]*)\.(.*)$/.exec(file);
  if (!match) throw new InitError('Runtime.MalformedHandlerName', 'Bad handler');
  const [, moduleName, fnPath] = match;
  const mod = await loadModule(moduleRoot, moduleName);
  const fn = fnPath.split('.').reduce((nested, key) => nested && nested[key], mod);
  if (!fn) throw new InitError('Runtime.HandlerNotFound', `${handlerString} is undefined or not exported`);
  if (typeof fn !== 'function') throw new InitError('Runtime.HandlerNotFound', `${handlerString} is not a function`);
  return fn;
}

// -- one invocation -------------------------------------------------------------------------------------------

function makeContext(headers, requestId) {
  const deadline = Number(headers['lambda-runtime-deadline-ms']);
  const env = process.env;
  const context = {
    callbackWaitsForEmptyEventLoop: true,
    functionName: env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    awsRequestId: requestId,
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    identity: undefined,
    clientContext: undefined,
    getRemainingTimeInMillis: () => Math.max(deadline - Date.now(), 0),
  };
  const clientContext = headers['lambda-runtime-client-context'];
  if (clientContext) context.clientContext = JSON.parse(clientContext);
  return context;
}

function runHandler(handler, event, context) {
  // As AWS's client (aws-lambda-ric's CallbackContext.js): the first of callback, succeed, fail, done and the
  // returned promise answers. The callback's error answers at once; its result waits for the event loop to be
  // empty while context.callbackWaitsForEmptyEventLoop is true (the default), so that work the handler left
  // pending runs first, in this invocation (and its failure is this invocation's). done/succeed/fail answer at once.
  return new Promise((resolve, reject) => {
    let answered = false;
    const settle = (err, result) => {
      if (answered) return;
      answered = true;
      if (err !== undefined && err !== null) reject(err);
      else resolve(result);
    };
    answerOnEmptyLoop = () => settle(null, null);
    let finished = false;
    const first = (fn) => (...args) => {
      if (finished) return;
      finished = true;
      fn(...args);
    };
    const callback = first((err, result) => {
      if (err !== undefined && err !== null) settle(err);
      else if (context.callbackWaitsForEmptyEventLoop) answerOnEmptyLoop = () => settle(null, result);
      else settle(null, result);
    });
    context.done = first(settle);
    context.succeed = first((result) => settle(null, result));
    context.fail = first((err) => settle(err === undefined || err === null ? 'handled' : err));
    let returned;
    try {
      returned = handler(event, context, callback);
    } catch (err) {
      settle(err);
      return;
    }
    if (returned && typeof returned.then === 'function') returned.then(context.succeed, context.fail);
  });
}

async function invokeOnce(handler) {
  const next = await call('GET', '/invocation/next');
  if (next.status !== 200) throw new Error(`invocation/next answered ${next.status}`);
  const requestId = next.headers['lambda-runtime-aws-request-id'];
  currentRequestId = requestId;
  const traceId = next.headers['lambda-runtime-trace-id'];
  if (traceId) process.env._X_AMZN_TRACE_ID = traceId;
  else delete process.env._X_AMZN_TRACE_ID;
  let body;
  try {
    const context = makeContext(next.headers, requestId);
    const event = JSON.parse(next.body.toString('utf8'));
    const result = await runHandler(handler, event, context).finally(() => {
      answerOnEmptyLoop = undefined;
    });
    body = JSON.stringify(result === undefined ? null : result);
  } catch (err) {
    console.error('Invoke Error', formatted(err));
    await postError(`/invocation/${requestId}/error`, errorDocument(err));
    return;
  }
  await call('POST', `/invocation/${requestId}/response`, body);
}

// -- main -----------------------------------------------------------------------------------------------------

// An uncaught exception or unhandled rejection fails the invocation under way (or the init) and ends the process.
// Between invocations (work a handler left behind) there is nothing to fail: the process ends, and the pool runs
// the next call on a fresh worker.
function failAndExit(kind) {
  return (reason) => {
    const err = kind === 'rejection' ? new UnhandledPromiseRejection(reason) : reason;
    const code = kind === 'rejection' ? 128 : 129;
    console.error(kind === 'rejection' ? 'Unhandled Promise Rejection' : 'Uncaught Exception', formatted(err));
    if (initialized && !currentRequestId) process.exit(code);
    const target = currentRequestId ? `/invocation/${currentRequestId}/error` : '/init/error';
    postError(target, errorDocument(err)).finally(() => process.exit(code));
  };
}

async function main() {
  patchConsole();
  process.on('uncaughtException', failAndExit('exception'));
  process.on('unhandledRejection', failAndExit('rejection'));
  process.on('beforeExit', () => answerOnEmptyLoop && answerOnEmptyLoop());
  let handler;
  try {
    handler = await loadHandler(process.env._HANDLER || '');
  } catch (err) {
    console.error('Uncaught Exception', formatted(err));
    await postError('/init/error', errorDocument(err)).catch(() => {});
    process.exit(129);
  }
  initialized = true;
  for (;;) {
    await invokeOnce(handler);
    currentRequestId = undefined;
  }
}

main().catch((err) => {
  process.stderr.write(`pointcast bootstrap: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
