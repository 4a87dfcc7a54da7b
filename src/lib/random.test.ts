import { Prng } from './prng.js';
import { randomContract } from './random.contract.js';
import { SystemRandom } from './random.js';

randomContract('Prng', () => new Prng(0x1234_5678));
randomContract('SystemRandom', () => new SystemRandom());
