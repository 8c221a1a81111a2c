/**
 * The documents a simulated server answers on its information routes (/get_load, /v1/loads,
 * /get_server_info, /get_model_info, /v1/models), in SGLang's shapes (docs/sim.md).
 */
import type { SimEngine } from './engine.js';
import { slowFactorOf, type SimFaults, type SimOptions } from './options.js';

/** Reported as `version` by /get_server_info: an SGLang-like version with a marker. */
export const SIM_VERSION = '0.5.0-switchyard-sim';

/** What the documents are made of: a server's identity, options, engine and current faults. */
export interface InfoSource {
  readonly engine: SimEngine;
  readonly opts: SimOptions;
  readonly gpuId: number;
  readonly host: string;
  readonly port: number;
  readonly modelName: string;
  readonly faults: SimFaults;
}

export function getLoadDocument(s: InfoSource): unknown {
  const e = s.engine;
  return [{ dp_rank: 0, num_reqs: e.numRunning + e.numWaiting, num_waiting_reqs: e.numWaiting, num_tokens: e.usedTokens }];
}

export function loadsDocument(s: InfoSource): unknown {
  const e = s.engine;
  const m = e.metricsSnapshot();
  return {
    timestamp: Date.now() / 1000,
    dp_rank_count: 1,
    loads: [
      {
        dp_rank: 0,
        num_running_reqs: e.numRunning,
        num_waiting_reqs: e.numWaiting,
        num_total_reqs: e.numRunning + e.numWaiting,
        num_used_tokens: e.usedTokens,
        max_total_num_tokens: s.opts.maxTotalTokens,
        token_usage: m.tokenUsage,
        gen_throughput: m.genThroughput,
        cache_hit_rate: m.cacheHitRate,
        max_running_requests: s.opts.maxRunningRequests,
      },
    ],
  };
}

export function serverInfoDocument(s: InfoSource): unknown {
  const o = s.opts;
  const e = s.engine;
  const m = e.metricsSnapshot();
  return {
    model_path: o.modelPath,
    tokenizer_path: o.tokenizerPath,
    served_model_name: o.servedModelName,
    host: s.host,
    port: s.port,
    gpu_id: s.gpuId,
    base_gpu_id: s.gpuId,
    tp_size: 1,
    dp_size: 1,
    pp_size: 1,
    max_running_requests: o.maxRunningRequests,
    max_total_tokens: o.maxTotalTokens,
    chunked_prefill_size: o.chunkedPrefillSize,
    max_prefill_tokens: o.maxPrefillTokens,
    context_length: o.contextLength,
    schedule_policy: 'fcfs',
    schedule_conservativeness: o.scheduleConservativeness,
    disable_radix_cache: o.disableRadixCache,
    page_size: 1,
    mem_fraction_static: 0.88,
    random_seed: o.seed + (s.gpuId - o.baseGpuId),
    enable_metrics: true,
    stream_output: false,
    stream_interval: o.streamInterval,
    skip_tokenizer_init: false,
    is_embedding: false,
    max_total_num_tokens: o.maxTotalTokens,
    max_req_input_len: e.maxSequenceLength - 1,
    internal_states: [
      {
        last_gen_throughput: m.genThroughput,
        num_running_reqs: m.numRunningReqs,
        num_waiting_reqs: m.numQueueReqs,
        token_usage: m.tokenUsage,
        cache_hit_rate: m.cacheHitRate,
        memory_usage: { kv_cache_tokens: o.maxTotalTokens, used_tokens: m.numUsedTokens, cached_tokens: e.cache.totalSize },
      },
    ],
    version: SIM_VERSION,
    sim: {
      profile: o.profile,
      prefill_base_ms: o.prefillBaseMs,
      prefill_per_token_ms: o.prefillPerTokenMs,
      decode_base_ms: o.decodeBaseMs,
      decode_per_seq_ms: o.decodePerSeqMs,
      decode_per_kv_token_us: o.decodePerKvTokenUs,
      time_scale: o.timeScale,
      slow_factor: slowFactorOf(o, s.gpuId - o.baseGpuId),
      jitter: o.jitter,
      output_len_median: o.outputLenMedian,
      output_len_sigma: o.outputLenSigma,
      faults: s.faults,
    },
  };
}

export function modelInfoDocument(s: InfoSource): unknown {
  return { model_path: s.opts.modelPath, tokenizer_path: s.opts.tokenizerPath, is_generation: true };
}

export function modelsDocument(s: InfoSource): unknown {
  return {
    object: 'list',
    data: [{ id: s.modelName, object: 'model', created: Math.floor(Date.now() / 1000), owned_by: 'sglang', root: s.opts.modelPath, max_model_len: s.opts.contextLength }],
  };
}
