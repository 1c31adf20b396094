/**
 * Typed errors. Every message says what happened, where (file, rank, step) and what to do.
 * The CLI prints `UserError`s as one line and exits with `exitCode`; anything else is a bug
 * and keeps its stack trace.
 */
export class UserError extends Error {
  /** Process exit code the CLI uses for this error. */
  readonly exitCode: number = 1;
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** A bad option, flag combination or config value. Exit code 2, like yargs' own usage errors. */
export class ConfigError extends UserError {
  override readonly exitCode = 2;
}

/** A dataset, list file or image that cannot be used. */
export class DataError extends UserError {}

/** A checkpoint that is missing, corrupt, or made for another model. */
export class CheckpointError extends UserError {
  override readonly exitCode = 2;
}

/** A worker process exited or reported an error. */
export class WorkerExitedError extends UserError {}

/**
 * A worker died (exited without finishing, or was killed) or hung: the coordinator may restart
 * the group from the newest checkpoint (--max-restarts). Carries where it happened.
 */
export class WorkerLostError extends WorkerExitedError {
  constructor(
    message: string,
    readonly rank: number,
    /** 1-based epoch and the step in it that the rank last reported. */
    readonly epoch: number,
    readonly step: number,
  ) {
    super(message);
  }
}

/** A peer did not answer in time: a dead or hung rank. */
export class CommTimeoutError extends UserError {}

/**
 * A control- or data-plane message that is malformed, of an unknown type, or not the one the
 * protocol expects at this point (wrong length, wrong sender): usually mismatched versions of
 * the program on different ranks, or a stray process talking to our sockets.
 */
export class ProtocolError extends UserError {}

/**
 * The native (oneDNN) backend cannot start here (addon not built, library missing or of another
 * version), or one of its kernels was given a tensor it does not support (dtype, rank, option).
 */
export class NativeBackendError extends UserError {}

/**
 * A model file (ONNX, an exported model) that cannot be read, uses an operator or attribute this
 * project does not support, or whose layers fit no preset. Exit code 2: the input is wrong.
 */
export class ModelFileError extends UserError {
  override readonly exitCode = 2;
}
