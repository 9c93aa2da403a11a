//! A typed Amazon States Language DSL: states, rules, templates and intrinsics that
//! serialise to deterministic JSON, and the build-time validation of a whole machine.

pub mod choice;
pub mod intrinsic;
pub mod path;
pub mod state;
pub mod template;
pub mod validate;

pub use choice::{ChoiceRule, Comparison, Condition};
pub use intrinsic::{Arg, Intrinsic};
pub use state::{
    Branch, Catcher, Choice, ExecutionType, Fail, Filters, ItemBatcher, ItemReader, JitterStrategy,
    Kind, Map, Parallel, Pass, PathOrNull, ProcessorConfig, ProcessorMode, ReaderConfig, Retrier,
    State, StateMachine, States, Succeed, Task, Transition, Wait,
};
pub use template::{Field, Template};
pub use validate::{validate, ValidationError, ValidationErrors};
