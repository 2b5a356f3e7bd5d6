// A test-only stand-in for Microsoft.Xrm.Sdk.dll: the part of the documented Dataverse SDK surface that the
// ppmi-build plug-in templates use, with the namespaces and member signatures of the public API reference
// (https://learn.microsoft.com/dotnet/api/microsoft.xrm.sdk?view=dataverse-sdk-latest). Members the templates do
// not use are left out; nothing here is invented. Compiled with Mono mcs (strong-named with a test key) so that
// the generated sources can be compiled and run without the NuGet package.
//
//   IPlugin.Execute(IServiceProvider)                      .../microsoft.xrm.sdk.iplugin.execute
//   IExecutionContext (properties below)                   .../microsoft.xrm.sdk.iexecutioncontext
//   IPluginExecutionContext : IExecutionContext            .../microsoft.xrm.sdk.ipluginexecutioncontext
//   ITracingService.Trace(string format, params object[])  .../microsoft.xrm.sdk.itracingservice.trace
//   IOrganizationServiceFactory.CreateOrganizationService(Guid?)
//   IManagedIdentityService.AcquireToken(IEnumerable<string>) and (Guid, IEnumerable<string>)
//   InvalidPluginExecutionException : Exception (sealed, [Serializable]) and its constructors
//   OperationStatus { Failed = 0, Canceled = 1, Retry = 2, Suspended = 3, Succeeded = 4 }
//   IExecutionContext.InputParameters / OutputParameters (ParameterCollection)
//   ParameterCollection : DataCollection<string, object>    .../microsoft.xrm.sdk.parametercollection
//   DataCollection<TKey, TValue> indexer, Contains, TryGetValue, Count   .../microsoft.xrm.sdk.datacollection-2
using System;
using System.Collections.Generic;
using System.Reflection;
using System.Runtime.Serialization;

[assembly: AssemblyTitle("Microsoft.Xrm.Sdk (ppmi-build test surface)")]
[assembly: AssemblyVersion("9.0.0.0")]

namespace Microsoft.Xrm.Sdk
{
    public interface IPlugin
    {
        void Execute(IServiceProvider serviceProvider);
    }

    public interface IExecutionContext
    {
        Guid BusinessUnitId { get; }
        Guid CorrelationId { get; }
        int Depth { get; }
        Guid InitiatingUserId { get; }
        bool IsExecutingOffline { get; }
        bool IsInTransaction { get; }
        bool IsOfflinePlayback { get; }
        int IsolationMode { get; }
        string MessageName { get; }
        int Mode { get; }
        DateTime OperationCreatedOn { get; }
        Guid OperationId { get; }
        Guid OrganizationId { get; }
        string OrganizationName { get; }
        Guid PrimaryEntityId { get; }
        string PrimaryEntityName { get; }
        Guid? RequestId { get; }
        string SecondaryEntityName { get; }
        Guid UserId { get; }
        ParameterCollection InputParameters { get; }
        ParameterCollection OutputParameters { get; }
    }

    // Only the members the templates use; the real class also implements IEnumerable<KeyValuePair<TKey, TValue>>.
    public abstract class DataCollection<TKey, TValue>
    {
        private readonly Dictionary<TKey, TValue> items = new Dictionary<TKey, TValue>();

        public TValue this[TKey key]
        {
            get { return items[key]; }
            set { items[key] = value; }
        }

        public int Count
        {
            get { return items.Count; }
        }

        public bool Contains(TKey key)
        {
            return items.ContainsKey(key);
        }

        public bool TryGetValue(TKey key, out TValue value)
        {
            return items.TryGetValue(key, out value);
        }
    }

    public sealed class ParameterCollection : DataCollection<string, object>
    {
    }

    public interface IPluginExecutionContext : IExecutionContext
    {
        IPluginExecutionContext ParentContext { get; }
        int Stage { get; }
    }

    public interface ITracingService
    {
        void Trace(string format, params object[] args);
    }

    // The real interface has Create/Retrieve/Update/Delete/Associate/Disassociate/RetrieveMultiple/Execute, which
    // need Entity, ColumnSet, QueryBase, OrganizationRequest...; the templates only pass the service around.
    public interface IOrganizationService
    {
    }

    public interface IOrganizationServiceFactory
    {
        IOrganizationService CreateOrganizationService(Guid? userId);
    }

    public interface IManagedIdentityService
    {
        string AcquireToken(IEnumerable<string> scopes);

        string AcquireToken(Guid managedIdentityId, IEnumerable<string> scopes);
    }

    public enum OperationStatus
    {
        Failed = 0,
        Canceled = 1,
        Retry = 2,
        Suspended = 3,
        Succeeded = 4,
    }

    [Serializable]
    public sealed class InvalidPluginExecutionException : Exception, ISerializable
    {
        public InvalidPluginExecutionException() : this(OperationStatus.Failed, 0, null) { }

        public InvalidPluginExecutionException(string message) : this(OperationStatus.Failed, 0, message) { }

        public InvalidPluginExecutionException(string message, Exception inner) : base(message, inner)
        {
            Status = OperationStatus.Failed;
        }

        public InvalidPluginExecutionException(OperationStatus status) : this(status, 0, null) { }

        public InvalidPluginExecutionException(OperationStatus status, string message) : this(status, 0, message) { }

        public InvalidPluginExecutionException(OperationStatus status, int errorCode, string message) : base(message)
        {
            Status = status;
            ErrorCode = errorCode;
        }

        private InvalidPluginExecutionException(SerializationInfo info, StreamingContext context) : base(info, context)
        {
        }

        public int ErrorCode { get; private set; }

        public OperationStatus Status { get; private set; }
    }
}
