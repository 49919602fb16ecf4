import type { Command } from 'commander';

/*
 * Commander hands parsed operands and option values over untyped (`any`). These read them back
 * with a check, so a mismatch between a command's declaration and its use fails loudly.
 */

export function operand(cmd: Command, index: number): string | undefined {
  const value: unknown = cmd.processedArgs[index];
  if (value === undefined || typeof value === 'string') return value;
  throw new TypeError(`statefs ${cmd.name()}: operand ${index} is not a string`);
}

/** An operand declared `<required>`: commander has already refused the command line without it. */
export function requiredOperand(cmd: Command, index: number): string {
  const value = operand(cmd, index);
  if (value === undefined) throw new TypeError(`statefs ${cmd.name()}: operand ${index} is missing`);
  return value;
}

export function stringOption(cmd: Command, name: string): string | undefined {
  const value: unknown = cmd.getOptionValue(name);
  if (value === undefined || typeof value === 'string') return value;
  throw new TypeError(`statefs ${cmd.name()}: option ${name} is not a string`);
}

/** An option declared with `requiredOption`. */
export function requiredStringOption(cmd: Command, name: string): string {
  const value = stringOption(cmd, name);
  if (value === undefined) throw new TypeError(`statefs ${cmd.name()}: option ${name} is missing`);
  return value;
}

/** An option whose argParser returns a number. */
export function numberOption(cmd: Command, name: string): number | undefined {
  const value: unknown = cmd.getOptionValue(name);
  if (value === undefined || typeof value === 'number') return value;
  throw new TypeError(`statefs ${cmd.name()}: option ${name} is not a number`);
}

/** A repeatable option whose argParser collects its values into an array (absent: none given). */
export function stringListOption(cmd: Command, name: string): string[] {
  const value: unknown = cmd.getOptionValue(name);
  if (value === undefined) return [];
  if (Array.isArray(value) && value.every((v): v is string => typeof v === 'string')) return value;
  throw new TypeError(`statefs ${cmd.name()}: option ${name} is not a list of strings`);
}

export function flag(cmd: Command, name: string): boolean {
  return cmd.getOptionValue(name) === true;
}

/** Every command takes `--json`. */
export function wantsJson(cmd: Command): boolean {
  return flag(cmd, 'json');
}
