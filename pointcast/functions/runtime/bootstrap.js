'use strict';
/**
 * pointcast's Node.js runtime bootstrap: a Lambda Runtime API client with no dependencies beyond Node itself.
 *
 * Workers run AWS's own client (npm aws-lambda-ric) where `pointcast functions install-node-ric` has built it
 * (node_ric.py); it needs a native build, so this runs where it is not installed. It speaks the same API
 * (2018-06-01) at AWS_LAMBDA_RUNTIME_API and follows the Lambda Node.js runtime's conventions:
 *
 *   - _HANDLER is "path/module.fn" (fn may be nested: "module.a.b"); the module is resolved in LAMBDA_TASK_ROOT
 *     as module.js, module.mjs or module.cjs (ES modules via import()), else by require(). It is loaded once
 *     per worker and reused (warm starts).
 *   - Init failures are posted to /init/error (Runtime.ImportModuleError, Runtime.HandlerNotFound,
 *     Runtime.MalformedHandlerName, Runtime.UserCodeSyntaxError) and the process exits.
 *   - Loop: GET /invocation/next -> handler(event, context, callback) -> POST /response or /error. Callback
 *     handlers (callback(err, result), context.succeed/fail/done) and async or promise-returning handlers both
 *     work; the first answer wins. Errors are posted as {errorType, errorMessage, trace}.
 *   - context: functionName, functionVersion, invokedFunctionArn, memoryLimitInMB, awsRequestId, logGroupName,
 *     logStreamName, clientContext, identity, getRemainingTimeInMillis(), callbackWaitsForEmptyEventLoop.
 *     A callback's answer is posted once the event loop is empty while callbackWaitsForEmptyEventLoop is true
 *     (the default), at once otherwise; an async handler's, and context.done/succeed/fail's, at once (work
 *     left pending then runs on in the warm worker, as after a freeze/thaw). If the event loop empties before
 *     the handler answers, the answer is null (as on Lambda).
 *   - console.* lines are written as "<ISO time>\t<request id>\t<LEVEL>\t<message>", as on Lambda.
 *   - An uncaught exception or unhandled rejection fails the current invocation and ends the process.
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

function errorDocument(err) {
  if (err instanceof Error) {
    const trace = typeof err.stack === 'string' ? err.stack.split('\n') : [];
    return { errorType: err.name || 'Error', errorMessage: err.message, trace };
  }
  if (typeof err === 'string') return { errorType: 'string', errorMessage: err, trace: [] };
  let message;
  try {
    message = JSON.stringify(err);
  } catch (_) {
    message = String(err);
  }
  return { errorType: typeof err, errorMessage: message === undefined ? String(err) : message, trace: [] };
}

function postError(urlPath, doc) {
  return call('POST', urlPath, JSON.stringify(doc), { 'Lambda-Runtime-Function-Error-Type': doc.errorType });
}

// -- logging --------------------------------------------------------------------------------------------------

function patchConsole() {
  const line = (level) => (...args) => {
    const text = util.format(...args);
    process.stdout.write(`${new Date().toISOString()}\t${currentRequestId}\t${level}\t${text}\n`);
  };
  console.log = line('INFO');
  console.info = line('INFO');
  console.debug = line('DEBUG');
  console.warn = line('WARN');
  console.error = line('ERROR');
  console.trace = (...args) => line('TRACE')(new Error(util.format(...args)).stack.replace(/^Error/, 'Trace'));
}

// -- loading the handler --------------------------------------------------------------------------------------

class InitError extends Error {
  constructor(errorType, message, cause) {
    super(message);
    this.name = errorType;
    if (cause && cause.stack) this.stack = `${errorType}: ${message}\n${cause.stack}`;
  }
}

async function loadModule(moduleRoot, moduleName) {
  const base = path.resolve(TASK_ROOT, moduleRoot, moduleName);
  try {
    if (fs.existsSync(base + '.mjs')) return await import(pathToFileURL(base + '.mjs').href);
    for (const ext of ['.js', '.cjs']) {
      if (!fs.existsSync(base + ext)) continue;
      try {
        return require(base + ext);
      } catch (err) {
        if (err && err.code === 'ERR_REQUIRE_ESM') return await import(pathToFileURL(base + ext).href);
        throw err;
      }
    }
    return require(require.resolve(moduleName, { paths: [path.resolve(TASK_ROOT, moduleRoot), TASK_ROOT] }));
  } catch (err) {
    if (err instanceof SyntaxError) throw new InitError('Runtime.UserCodeSyntaxError', String(err), err);
    if (err && err.code === 'MODULE_NOT_FOUND' && String(err.message).includes(moduleName)) {
      throw new InitError('Runtime.ImportModuleError', `Error: Cannot find module '${moduleName}'`, err);
    }
    throw err;
  }
}

async function loadHandler(handlerString) {
  const file = path.basename(handlerString);
  const moduleRoot = handlerString.slice(0, handlerString.length - file.length);
  const match = /^([^.]*)\.(.*)$/.exec(file);
  if (!match) throw new InitError('Runtime.MalformedHandlerName', `Bad handler ${handlerString}`);
  const [, moduleName, fnPath] = match;
  const mod = await loadModule(moduleRoot, moduleName);
  let fn = mod;
  for (const part of fnPath.split('.')) fn = fn == null ? undefined : fn[part];
  if (typeof fn !== 'function' && mod && mod.default) {
    fn = mod.default;
    for (const part of fnPath.split('.')) fn = fn == null ? undefined : fn[part];
  }
  if (typeof fn !== 'function') {
    throw new InitError('Runtime.HandlerNotFound', `${file} is undefined or not exported`);
  }
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
  return new Promise((resolve, reject) => {
    let answered = false;
    const settle = (err, result) => {
      if (answered) return;
      answered = true;
      if (err !== undefined && err !== null) reject(err);
      else resolve(result);
    };
    answerOnEmptyLoop = () => settle(null, null);
    // The handler's callback answers once the event loop is empty while context.callbackWaitsForEmptyEventLoop
    // is true (the default), as on Lambda: work the handler left pending runs first, in this invocation, and
    // an exception it throws fails this invocation, not the next one. context.done/succeed/fail answer at once.
    let called = false;
    const callback = (err, result) => {
      if (answered || called) return;
      called = true;
      if (context.callbackWaitsForEmptyEventLoop) answerOnEmptyLoop = () => settle(err, result);
      else settle(err, result);
    };
    context.done = settle;
    context.succeed = (result) => settle(null, result);
    context.fail = (err) => settle(err === undefined || err === null ? 'handled' : err);
    let returned;
    try {
      returned = handler(event, context, callback);
    } catch (err) {
      settle(err);
      return;
    }
    if (returned && typeof returned.then === 'function') {
      returned.then(
        (result) => settle(null, result),
        (err) => settle(err === undefined || err === null ? new Error('the handler rejected with ' + err) : err),
      );
    }
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
    const doc = errorDocument(err);
    console.error('Invoke Error', '\t' + JSON.stringify(doc));
    await postError(`/invocation/${requestId}/error`, doc);
    return;
  }
  await call('POST', `/invocation/${requestId}/response`, body);
}

// -- main -----------------------------------------------------------------------------------------------------

function failAndExit(kind) {
  return (err) => {
    const doc = errorDocument(err);
    doc.errorType = kind === 'rejection' ? 'Runtime.UnhandledPromiseRejection' : doc.errorType;
    console.error(kind === 'rejection' ? 'Unhandled Promise Rejection' : 'Uncaught Exception', '\t' + JSON.stringify(doc));
    const target = currentRequestId ? `/invocation/${currentRequestId}/error` : '/init/error';
    postError(target, doc).finally(() => process.exit(129));
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
    const doc = errorDocument(err);
    if (!(err instanceof InitError)) doc.errorType = 'Runtime.ImportModuleError';
    console.error('Init Error', '\t' + JSON.stringify(doc));
    await postError('/init/error', doc).catch(() => {});
    process.exit(1);
  }
  for (;;) {
    await invokeOnce(handler);
    currentRequestId = undefined;
  }
}

main().catch((err) => {
  process.stderr.write(`pointcast bootstrap: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
