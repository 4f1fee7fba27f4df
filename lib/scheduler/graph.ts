// Job graphs: one job made of nodes, each a task of its own type and body, whose edges say which nodes' results a
// node consumes. The graph's last node is its root: the graph's answer is the root's result.
//
// This module checks a graph's shape and keeps the bookkeeping of a running one: which nodes wait for inputs,
// which results are still wanted, how many bytes they hold. The core (core.ts) turns a node whose inputs are all
// there into a task, and calls back here when that task ends.

/** A node as submitted: its job type, its own body, and the indices of the nodes whose results it consumes. */
export interface GraphNodeSpec {
  readonly type: string;
  readonly body: Buffer;
  readonly inputs: readonly number[];
}

export interface GraphLimits {
  /** Nodes a graph may have. */
  maxNodes: number;
  /** Edges (inputs, all nodes together) a graph may have. */
  maxEdges: number;
}

/**
 * What is wrong with a graph's shape, or null: no node, too many nodes or edges, an input that names no node or
 * the node itself, a cycle, a node other than the root whose result nothing consumes, a root that is consumed.
 * Requiring every other node to be consumed means every node leads to the root, so nothing runs for nobody.
 * O(nodes + edges).
 */
export function checkGraph(nodes: readonly GraphNodeSpec[], limits: GraphLimits): string | null {
  const n = nodes.length;
  if (n === 0) return 'a graph needs at least one node';
  if (n > limits.maxNodes) return `the graph has ${n} nodes; at most ${limits.maxNodes} are allowed (maxGraphNodes)`;
  let edges = 0;
  for (const node of nodes) edges += node.inputs.length;
  if (edges > limits.maxEdges) return `the graph has ${edges} edges; at most ${limits.maxEdges} are allowed (maxGraphEdges)`;
  const consumed = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const node = nodes[i]!;
    if (node.type.length === 0) return `node ${i} has an empty job type`;
    for (const input of node.inputs) {
      if (!Number.isInteger(input) || input < 0 || input >= n) return `node ${i} consumes node ${input}, which does not exist (the graph has ${n} nodes)`;
      if (input === i) return `node ${i} consumes its own result`;
      consumed[input]!++;
    }
  }
  const root = n - 1;
  if (consumed[root]! > 0) return `the last node (${root}) is the graph's root, whose result is the answer; no node may consume it`;
  for (let i = 0; i < root; i++) {
    if (consumed[i] === 0) return `no node consumes the result of node ${i}; every node but the last (the root) must be consumed`;
  }
  // Kahn's algorithm: what is never freed of its inputs lies on a cycle, or behind one.
  const waiting = new Uint32Array(n);
  const ready: number[] = [];
  for (let i = 0; i < n; i++) if ((waiting[i] = nodes[i]!.inputs.length) === 0) ready.push(i);
  if (ready.length === 0) return 'every node consumes another: the graph has a cycle';
  const consumers = consumersOf(nodes);
  let freed = 0;
  while (ready.length > 0) {
    const i = ready.pop()!;
    freed++;
    for (const c of consumers[i]!) if (--waiting[c]! === 0) ready.push(c);
  }
  if (freed < n) {
    let i = 0;
    while (waiting[i] === 0) i++;
    return `the graph has a cycle: node ${i} waits for itself through its inputs`;
  }
  return null;
}

/** For each node, the nodes consuming it, once per edge. */
function consumersOf(nodes: readonly GraphNodeSpec[]): number[][] {
  const consumers = nodes.map((): number[] => []);
  nodes.forEach((node, i) => {
    for (const input of node.inputs) consumers[input]!.push(i);
  });
  return consumers;
}

/** One node of a running graph. T is the core's task object, R a result. */
export interface GraphNode<T, R> {
  readonly type: string;
  readonly body: Buffer;
  readonly inputs: readonly number[];
  /** The nodes consuming this one, once per edge. */
  readonly consumers: readonly number[];
  /** Inputs whose results are not there yet (per edge); the node runs when this reaches 0. */
  waiting: number;
  /** Consumers that have not completed yet (per edge); the result goes when this reaches 0. */
  wanted: number;
  /** Its result once completed, kept while a consumer still wants it, and the bytes it holds. */
  result: R | null;
  bytes: number;
  /** Its task while it runs, is queued or waits out a retry; null before and after. */
  task: T | null;
  done: boolean;
}

/**
 * A graph job while it runs. Its nodes become tasks as their inputs complete: each such task knows its graph
 * and node, and shares the graph's job id as its place in the queue (a graph's nodes are as old as the graph).
 */
export class GraphRun<T, O, S, R> {
  readonly nodes: GraphNode<T, R>[];
  /** Nodes completed. */
  done = 0;
  /** Node tasks alive (queued, delayed or running). */
  active = 0;
  /** Dispatches of its nodes so far, retries and requeues included. */
  dispatches = 0;
  /** Bytes of the results it holds for consumers. */
  bytes = 0;
  /** The core's clock at its first dispatch (0: none yet), and at the last progress sent to its owner and waiters. */
  startedAt = 0;
  progressSentAt = -Infinity;
  /** The name of the worker that ran its last dispatched node. */
  lastWorker: string | null = null;
  settled = false;

  constructor(
    readonly seq: number,
    readonly requestId: number,
    public owner: O | null,
    readonly settings: S & { readonly priority: number; readonly detached: boolean },
    readonly submittedAt: number,
    specs: readonly GraphNodeSpec[],
    /** Bytes of the nodes' bodies, counted in the owner's budget while the graph is unsettled. */
    readonly bodyBytes: number,
  ) {
    const consumers = consumersOf(specs);
    this.nodes = specs.map((spec, i) => ({
      type: spec.type,
      body: spec.body,
      inputs: spec.inputs,
      consumers: consumers[i]!,
      waiting: spec.inputs.length,
      wanted: consumers[i]!.length,
      result: null,
      bytes: 0,
      task: null,
      done: false,
    }));
  }

  get root(): number {
    return this.nodes.length - 1;
  }

  get detached(): boolean {
    return this.settings.detached;
  }

  get priority(): number {
    return this.settings.priority;
  }

  /** The nodes that can run from the start: those without inputs. */
  sources(): number[] {
    const out: number[] = [];
    this.nodes.forEach((node, i) => node.inputs.length === 0 && out.push(i));
    return out;
  }

  /** The inputs' results of a node about to run, in the order of its inputs. */
  inputsOf(index: number): R[] {
    return this.nodes[index]!.inputs.map((i) => this.nodes[i]!.result!);
  }

  /**
   * Node `index` completed and its result is kept (`bytes` of it): the consumers it completes the inputs of,
   * which can run now.
   */
  completed(index: number, result: R, bytes: number): number[] {
    const node = this.nodes[index]!;
    node.done = true;
    node.task = null;
    this.done++;
    this.active--;
    this.release(node);
    const runnable: number[] = [];
    if (node.wanted === 0) return runnable; // the root
    node.result = result;
    node.bytes = bytes;
    this.bytes += bytes;
    for (const c of node.consumers) if (--this.nodes[c]!.waiting === 0) runnable.push(c);
    return runnable;
  }

  /** Node `index`'s task ended without a result (the graph ends with it). */
  ended(index: number): void {
    const node = this.nodes[index]!;
    node.task = null;
    this.active--;
  }

  /** Drops every result it holds; its tasks still alive, for the core to withdraw. */
  close(): T[] {
    this.settled = true;
    const alive: T[] = [];
    for (const node of this.nodes) {
      if (node.task !== null) alive.push(node.task);
      node.task = null;
      node.result = null;
    }
    this.bytes = 0;
    this.active = 0;
    return alive;
  }

  /** A completed node's inputs are no longer wanted by it: each goes once no consumer wants it. */
  private release(node: GraphNode<T, R>): void {
    for (const i of node.inputs) {
      const input = this.nodes[i]!;
      if (--input.wanted === 0) {
        this.bytes -= input.bytes;
        input.result = null;
        input.bytes = 0;
      }
    }
  }

  /** The state status() reports while it is unsettled. */
  get state(): 'queued' | 'running' {
    return this.dispatches > 0 ? 'running' : 'queued';
  }
}
